import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { detectHost } from '../../src/engine/host';
import { listDeviceProfiles, loadDeviceProfile, pickProfile } from '../../src/engine/profile';
import { openSession, type SessionFactory } from '../../src/engine/providers';
import { loadPackage } from '../../src/model/package';
import { BUNDLED } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/**
 * TensorRT cannot run here, so this factory stands in for a GPU build: it accepts the session options a GPU
 * build would get, records them, and opens the real model on CPU.
 */
function gpuBuild(available: string[]): { factory: SessionFactory; calls: ort.InferenceSession.SessionOptions[] } {
  const calls: ort.InferenceSession.SessionOptions[] = [];
  const factory: SessionFactory = async (path, options) => {
    calls.push(options);
    const first = options.executionProviders?.[0];
    const name = typeof first === 'string' ? first : first?.name;
    if (!available.includes(name!)) throw new Error(`unsupported: '${name}'`);
    return ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
  };
  return { factory, calls };
}

describe('provider chain', () => {
  it('uses TensorRT when present, hands ONNX Runtime the rest of the chain and applies fp16, cache and workspace', async () => {
    const pkg = await loadPackage(BUNDLED, { verifyHashes: false });
    const profile = await loadDeviceProfile('jetson-orin-nano');
    const { factory, calls } = gpuBuild(['tensorrt', 'cuda', 'cpu']);
    const env: NodeJS.ProcessEnv = {};
    const { session, placement } = await openSession(pkg.trunk.path, profile.executionProviders, { intraOp: 4, interOp: 1 }, factory, env);
    await session.release();
    expect(placement.provider).toBe('tensorrt');
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      executionProviders: [{ name: 'tensorrt', deviceId: 0 }, { name: 'cuda', deviceId: 0 }, 'cpu'],
      intraOpNumThreads: 4,
      interOpNumThreads: 1,
    });
    expect(env).toMatchObject({
      ORT_TENSORRT_FP16_ENABLE: '1',
      ORT_TENSORRT_ENGINE_CACHE_ENABLE: '1',
      ORT_TENSORRT_CACHE_PATH: '/var/lib/sgmoe/trt-cache',
      ORT_TENSORRT_MAX_WORKSPACE_SIZE: '1073741824',
    });
    expect(placement.settings).toMatchObject({ deviceId: 0, ORT_TENSORRT_FP16_ENABLE: '1' });
  });

  it('falls to CUDA when TensorRT is missing, recording the reason', async () => {
    const pkg = await loadPackage(BUNDLED, { verifyHashes: false });
    const { factory, calls } = gpuBuild(['cuda', 'cpu']);
    const { session, placement } = await openSession(
      pkg.gate.path,
      [{ name: 'tensorrt', deviceId: 1, fp16: false }, { name: 'cuda', deviceId: 1 }, { name: 'cpu' }],
      { intraOp: 1, interOp: 1 },
      factory,
      {},
    );
    await session.release();
    expect(placement).toMatchObject({
      provider: 'cuda',
      attempts: [{ provider: 'tensorrt', ok: false, reason: "unsupported: 'tensorrt'" }, { provider: 'cuda', ok: true }],
      settings: { deviceId: 1 },
    });
    expect(calls[1].executionProviders).toEqual([{ name: 'cuda', deviceId: 1 }, 'cpu']);
  });

  it('with the real runtime, a chain with no provider this build has fails with E_PROVIDER_UNAVAILABLE', async () => {
    const pkg = await loadPackage(BUNDLED, { verifyHashes: false });
    await expect(
      openSession(pkg.gate.path, [{ name: 'cuda', deviceId: 0 }], { intraOp: 1, interOp: 1 }, undefined, {}),
    ).rejects.toMatchObject({ code: 'E_PROVIDER_UNAVAILABLE', details: { attempts: [{ provider: 'cuda', ok: false }] } });
  });
});

describe('device profiles', () => {
  it('ships a valid profile for each supported board and host', async () => {
    const names = (await listDeviceProfiles()).map((p) => p.name);
    expect(names).toEqual(
      expect.arrayContaining(['jetson-orin-nano', 'jetson-orin-nx', 'jetson-agx-orin', 'jetson-xavier-nx', 'x86_64-cpu', 'x86_64-nvidia']),
    );
  });

  it('every GPU profile ends its chain with CPU so a node never stops for a missing provider', async () => {
    for (const p of await listDeviceProfiles()) expect(p.executionProviders.at(-1)).toEqual({ name: 'cpu' });
  });

  it('picks the Jetson model first, then architecture and GPU', async () => {
    const profiles = await listDeviceProfiles();
    const pick = (host: Parameters<typeof pickProfile>[1]) => pickProfile(profiles, host)?.name;
    expect(pick({ arch: 'arm64', boardModel: 'NVIDIA Jetson Orin Nano Developer Kit', nvidiaGpu: true })).toBe('jetson-orin-nano');
    expect(pick({ arch: 'arm64', boardModel: 'NVIDIA Jetson AGX Orin', nvidiaGpu: true })).toBe('jetson-agx-orin');
    expect(pick({ arch: 'arm64', boardModel: 'NVIDIA Jetson Xavier NX Developer Kit', nvidiaGpu: true })).toBe('jetson-xavier-nx');
    expect(pick({ arch: 'x64', nvidiaGpu: true })).toBe('x86_64-nvidia');
    expect(pick({ arch: 'x64', nvidiaGpu: false })).toBe('x86_64-cpu');
    expect(pick({ arch: 'arm64', boardModel: 'Raspberry Pi 5', nvidiaGpu: false })).toBeUndefined();
  });

  it('an invalid profile is refused with E_PROFILE_INVALID, an unknown one with E_PROFILE_NOT_FOUND', async () => {
    const bad = join(tmp.path, 'bad.json');
    writeFileSync(bad, JSON.stringify({ name: 'bad', executionProviders: [{ name: 'opencl' }] }));
    await expect(loadDeviceProfile(bad)).rejects.toMatchObject({ code: 'E_PROFILE_INVALID' });
    await expect(loadDeviceProfile('no-such-board')).rejects.toMatchObject({
      code: 'E_PROFILE_NOT_FOUND',
      message: expect.stringContaining('x86_64-cpu'),
    });
  });

  it('a profile that exists but cannot be read is E_FILE_UNREADABLE, not "not found"', async () => {
    // A directory where the file should be: a real read error other than ENOENT (EISDIR), as EACCES or EIO would be.
    const unreadable = join(tmp.path, 'unreadable.json');
    mkdirSync(unreadable);
    await expect(loadDeviceProfile(unreadable)).rejects.toMatchObject({ code: 'E_FILE_UNREADABLE', message: expect.stringContaining('EISDIR') });
  });

  it('reads a Jetson board from its device tree', () => {
    const root = join(tmp.path, 'jetson-root') + '/';
    mkdirSync(root + 'proc/device-tree', { recursive: true });
    writeFileSync(root + 'proc/device-tree/model', 'NVIDIA Jetson Orin NX Engineering Reference Developer Kit\0');
    expect(detectHost(root)).toMatchObject({ boardModel: 'NVIDIA Jetson Orin NX Engineering Reference Developer Kit', nvidiaGpu: true });
    expect(detectHost(join(tmp.path, 'empty') + '/')).toMatchObject({ nvidiaGpu: false, boardModel: undefined });
  });
});

describe('doctor', () => {
  it('reports what works here: CPU yes, GPU providers no with the runtime\'s reason, and the profile for this host', async () => {
    const { runDoctor } = await import('../../src/engine/doctor');
    const pkg = await loadPackage(BUNDLED, { verifyHashes: false });
    const report = await runDoctor(pkg.gate.path);
    const byName = Object.fromEntries(report.providers.map((p) => [p.provider, p]));
    expect(byName.cpu.works).toBe(true);
    expect(byName.cuda).toMatchObject({ works: false, reason: expect.stringMatching(/cuda/i) });
    expect(byName.tensorrt).toMatchObject({ works: false, reason: expect.stringMatching(/tensorrt/i) });
    expect(report.profile?.name).toBe(pickProfile(await listDeviceProfiles(), detectHost())?.name);
    expect(report.missingForGpu.join('\n')).toMatch(/CUDA provider/);
  });
});
