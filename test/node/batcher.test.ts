import { join } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { loadSelftest } from '../../src/model/selftest';
import { MicroBatcher } from '../../src/node/batcher';
import { BUNDLED } from '../helpers/package';

/** A wait long enough that a test waiting on it would time out: these tests pass only if nobody waits. */
const FOREVER_MS = 10 * 60_000;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

let engine: Engine;
let input: Float32Array;
/** The size of every batch the engine was given, in order. */
let batches: number[];

beforeAll(async () => {
  engine = await Engine.load(BUNDLED, { threads: { intraOp: 1, interOp: 1 } });
  input = Float32Array.from((await loadSelftest(join(BUNDLED, 'selftest.json'))).cases[0].input);
  const inferBatch = engine.inferBatch.bind(engine);
  engine.inferBatch = (tensors, ids) => {
    batches.push(tensors.length);
    return inferBatch(tensors, ids);
  };
});
beforeEach(() => {
  batches = [];
});
afterAll(() => engine.dispose());

describe('MicroBatcher', () => {
  test('a frame that finds the engine idle is decided at once, without waiting maxWaitMs for company', async () => {
    const batcher = new MicroBatcher(engine, 16, FOREVER_MS);
    for (let i = 0; i < 5; i++) await expect(batcher.submit(input, `lone-${i}`)).resolves.toMatchObject({ frameId: `lone-${i}` });
    expect(batches).toEqual([1, 1, 1, 1, 1]);
  });

  test('frames arriving in the same turn go together as one batch', async () => {
    const batcher = new MicroBatcher(engine, 16, FOREVER_MS);
    await Promise.all(['a', 'b', 'c'].map((id) => batcher.submit(input, id)));
    expect(batches).toEqual([3]);
  });

  test('frames that gathered while the engine worked go as the next batch, and the next idle arrival waits for company', async () => {
    const batcher = new MicroBatcher(engine, 2, FOREVER_MS);
    const first = batcher.submit(input, 'first');
    await nextTurn(); // the engine is now busy with `first`
    const gathered = [batcher.submit(input, 'g1'), batcher.submit(input, 'g2')];
    await Promise.all([first, ...gathered]);
    expect(batches).toEqual([1, 2]);
    // Frames are outpacing the engine: a lone arrival now waits (here for ever) until company fills the batch.
    const waiting = batcher.submit(input, 'w1');
    await nextTurn();
    expect(batches).toEqual([1, 2]);
    await Promise.all([waiting, batcher.submit(input, 'w2')]);
    expect(batches).toEqual([1, 2, 2]);
    // That batch had no company gathering behind it: the pressure is gone, the next frame goes at once.
    await batcher.submit(input, 'calm');
    expect(batches).toEqual([1, 2, 2, 1]);
  });

  test('maxWaitMs 0 sends every frame at once, each in its own batch when the engine is idle', async () => {
    const batcher = new MicroBatcher(engine, 16, 0);
    await Promise.all([batcher.submit(input, 'x'), batcher.submit(input, 'y')]);
    expect(batches).toEqual([1, 1]);
  });
});
