import type { Decision } from '../../src/engine/decision';
import type { Engine } from '../../src/engine/engine';
import type { EngineHost, HealthProbe, HealthSample } from '../../src/fleet/host';
import { percentile } from '../../src/percentile';

/**
 * The fleet tests' EngineHost, without the whole edge node (which is the real one): frames run one after another in arrival order, and a swap queues like a frame, so every
 * frame before it runs on the old engine and every frame after it on the new one: one frame boundary. Counts
 * frames, errors and latency for the health watch.
 */
export class SerialEngineHost implements EngineHost, HealthProbe {
  private current: Engine;
  private tail: Promise<unknown> = Promise.resolve();
  private frames = 0;
  private errors = 0;
  private latencies: number[] = [];

  constructor(
    engine: Engine,
    private readonly options: { latencyWindow?: number; onDecision?: (decision: Decision) => void } = {},
  ) {
    this.current = engine;
  }

  get engine(): Engine {
    return this.current;
  }

  infer(tensor: Float32Array, frameId: string): Promise<Decision> {
    return this.enqueue(async () => {
      const t0 = process.hrtime.bigint();
      try {
        const decision = await this.current.infer(tensor, frameId);
        this.options.onDecision?.(decision);
        return decision;
      } catch (err) {
        this.errors += 1;
        throw err;
      } finally {
        this.frames += 1;
        this.latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
        if (this.latencies.length > (this.options.latencyWindow ?? 256)) this.latencies.shift();
      }
    });
  }

  swap(next: Engine): Promise<{ previous: Engine }> {
    return this.enqueue(async () => {
      const previous = this.current;
      this.current = next;
      this.latencies = [];
      return { previous };
    });
  }

  sample(): HealthSample {
    return { frames: this.frames, errors: this.errors, latencyP99Us: this.latencies.length === 0 ? null : percentile(this.latencies, 99) };
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(work, work);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
