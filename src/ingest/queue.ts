import { SgmoeError } from '../errors';

/** What a full queue does with a new item: wait for room (folders) or drop the oldest item (live cameras). */
export type BackpressurePolicy = 'block' | 'drop-oldest';

/**
 * A bounded FIFO between one producer (a source) and one consumer (the engine). With `block`, `put` waits for
 * room; with `drop-oldest`, `put` never waits and the oldest item goes to `onDrop`, so a live camera never
 * lags behind. After `close`, the consumer still gets every item already queued, then the end (or `failure`).
 */
export class BoundedQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private readonly roomWaiters: Array<() => void> = [];
  private readonly itemWaiters: Array<() => void> = [];
  private closed = false;
  private failure: unknown;

  constructor(
    readonly capacity: number,
    readonly policy: BackpressurePolicy,
    private readonly onDrop: (item: T) => void = () => {},
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new SgmoeError('E_CONFIG_INVALID', `expected a queue capacity of at least 1, found ${capacity}`);
    }
  }

  get size(): number {
    return this.items.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async put(item: T): Promise<void> {
    if (this.closed) throw new SgmoeError('E_SOURCE_STOPPED', 'expected an open queue, found it closed');
    if (this.policy === 'drop-oldest' && this.items.length >= this.capacity) this.onDrop(this.items.shift() as T);
    // A producer already waiting when the queue closes is still admitted: nothing it held is lost.
    while (this.policy === 'block' && this.items.length >= this.capacity && !this.closed) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
    this.items.push(item);
    this.itemWaiters.shift()?.();
  }

  /** No more puts; the consumer drains what is queued, then ends (or throws `failure`). */
  close(failure?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = failure;
    for (const wake of this.roomWaiters.splice(0)) wake();
    for (const wake of this.itemWaiters.splice(0)) wake();
  }

  async take(): Promise<IteratorResult<T, undefined>> {
    while (this.items.length === 0) {
      if (this.closed) {
        if (this.failure !== undefined) throw this.failure;
        return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => this.itemWaiters.push(resolve));
    }
    const value = this.items.shift() as T;
    this.roomWaiters.shift()?.();
    return { done: false, value };
  }

  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    return { next: () => this.take() };
  }
}
