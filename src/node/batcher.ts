import type { Decision } from '../engine/decision';
import { SgmoeError } from '../errors';
import type { Engine } from '../engine/engine';

interface Pending {
  tensor: Float32Array;
  frameId: string;
  resolve: (d: Decision) => void;
  reject: (err: unknown) => void;
}

/**
 * Collects frames from every source into micro-batches. While the engine works, frames gather and go as the
 * next batch the moment it is free. A frame that finds the engine idle goes at once, with whatever arrives in
 * the same turn of the event loop; it waits up to `maxWaitMs` for company (or until the batch is full) only
 * when frames are outpacing the engine, i.e. the last batch had gathered while the engine worked. Batches run
 * one at a time, and `swap` changes the engine between two batches, never inside one.
 */
export class MicroBatcher {
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private busy = false;
  /** The last batch had gathered while the engine was busy: more frames are likely on their way. */
  private outpaced = false;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private engine: Engine,
    private readonly maxSize: number,
    private readonly maxWaitMs: number,
  ) {}

  get current(): Engine {
    return this.engine;
  }

  submit(tensor: Float32Array, frameId: string): Promise<Decision> {
    return new Promise((resolve, reject) => {
      this.pending.push({ tensor, frameId, resolve, reject });
      if (this.busy) return;
      if (this.pending.length >= this.maxSize || this.maxWaitMs === 0) this.flush();
      else if (this.outpaced) this.timer ??= setTimeout(() => this.flush(), this.maxWaitMs);
      else this.immediate ??= setImmediate(() => this.flush());
    });
  }

  /** Switches engines at a batch boundary; resolves once the batch in flight (on the old engine) is done. */
  async swap(next: Engine): Promise<Engine> {
    const previous = this.engine;
    this.engine = next;
    await this.running;
    return previous;
  }

  /** Resolves when every frame handed over so far is decided. */
  async drain(): Promise<void> {
    while (this.busy || this.pending.length > 0) {
      this.flush();
      await this.running;
    }
  }

  private flush(gathered = false): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    if (this.busy || this.pending.length === 0) return;
    this.outpaced = gathered;
    const engine = this.engine;
    // Frames preprocessed for a model swapped out meanwhile (another input size) go back to be prepared again.
    const batch = this.pending.splice(0, this.maxSize).filter((p) => {
      if (p.tensor.length === engine.inputSize) return true;
      p.reject(new SgmoeError('E_TENSOR_STALE', `frame ${p.frameId} was prepared for another model input (${p.tensor.length} values, the model takes ${engine.inputSize})`));
      return false;
    });
    if (batch.length === 0) return;
    this.busy = true;
    this.running = (async () => {
      try {
        const decisions = await engine.inferBatch(
          batch.map((p) => p.tensor),
          batch.map((p) => p.frameId),
        );
        batch.forEach((p, i) => p.resolve(decisions[i]));
      } catch (err) {
        batch.forEach((p) => p.reject(err));
      } finally {
        this.busy = false;
        // Whatever gathered meanwhile has waited a whole batch already: it goes now.
        this.flush(true);
      }
    })();
  }
}
