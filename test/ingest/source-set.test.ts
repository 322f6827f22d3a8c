import { DirSource, PushSource, SourceSet, type Frame } from '../../src/ingest';

describe('SourceSet', () => {
  test('sources take turns, a failed source leaves the set, settle reaches the right source, the counters add up', async () => {
    const folder = new PushSource('folder', { capacity: 16 });
    const camera = new PushSource('camera', { capacity: 16 });
    const errors: string[] = [];
    const missing = new DirSource('/nonexistent/sgmoe-inbox', { onError: (e) => errors.push(e.code) });
    for (let i = 0; i < 6; i++) await folder.push(Buffer.from(`f${i}`));
    for (let i = 0; i < 3; i++) await camera.push(Buffer.from(`c${i}`));
    folder.end();
    camera.end();

    const set = new SourceSet([folder, camera, missing]);
    const seen: Frame[] = [];
    for await (const frame of set) {
      seen.push(frame);
      await set.settle(frame, frame.bytes?.toString() === 'f1' ? { status: 'rejected', error: Object.assign(new Error('bad'), { code: 'E_FRAME_DECODE' }) as never } : { status: 'decided' });
    }
    expect(seen.map((f) => f.bytes?.toString())).toEqual(['f0', 'c0', 'f1', 'c1', 'f2', 'c2', 'f3', 'f4', 'f5']);
    expect(errors).toEqual(['E_SOURCE_NOT_FOUND']);
    const [f, c, m] = set.stats();
    expect(f).toMatchObject({ name: 'folder', frames: 6, decided: 5, rejected: 1 });
    expect(c).toMatchObject({ name: 'camera', frames: 3, decided: 3, rejected: 0 });
    expect(m).toMatchObject({ frames: 0, errors: 1 });
    await expect(set.settle({ id: 'x', source: 'elsewhere', receivedAt: 0 }, { status: 'decided' })).rejects.toMatchObject({ code: 'E_SOURCE_UNKNOWN' });
  });

  test('two sources with the same name are refused; breaking out of the loop stops every source', async () => {
    expect(() => new SourceSet([new PushSource('a'), new PushSource('a')])).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
    const a = new PushSource('a');
    const b = new PushSource('b');
    await a.push(Buffer.from('1'));
    for await (const frame of new SourceSet([a, b])) {
      expect(frame.source).toBe('a');
      break;
    }
    await expect(a.push(Buffer.from('2'))).rejects.toMatchObject({ code: 'E_SOURCE_STOPPED' });
    await expect(b.push(Buffer.from('2'))).rejects.toMatchObject({ code: 'E_SOURCE_STOPPED' });
  });
});
