import { SgmoeError } from '../errors';
import type { Frame } from './frame';
import type { FrameOutcome, FrameSource, SourceStats } from './source';

/**
 * Several sources read as one stream, each keeping its own queue and policy. Sources take turns when several
 * have frames ready (a full folder does not starve a camera). A source that fails (its error is in its
 * stats and onError) leaves the set; the others go on. `settle` reaches the source that produced the frame.
 */
export class SourceSet implements AsyncIterable<Frame> {
  private readonly byName = new Map<string, FrameSource>();

  constructor(readonly sources: FrameSource[]) {
    for (const source of sources) {
      if (this.byName.has(source.name)) {
        throw new SgmoeError('E_CONFIG_INVALID', `expected distinct source names, found ${source.name} twice`);
      }
      this.byName.set(source.name, source);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Frame> {
    const iterators = this.sources.map((s) => s[Symbol.asyncIterator]());
    type Next = { index: number; result?: IteratorResult<Frame>; failed?: unknown };
    const pending = new Map<number, Promise<Next>>();
    const pull = (index: number): void => {
      pending.set(index, iterators[index].next().then((result) => ({ index, result }), (failed: unknown) => ({ index, failed })));
    };
    iterators.forEach((_, index) => pull(index));
    let turn = 0;
    try {
      while (pending.size > 0) {
        // Promise.race favours the first listed among ready ones: list from the source after the last winner.
        const order = [...pending.keys()].sort((a, b) => rank(a, turn, iterators.length) - rank(b, turn, iterators.length));
        const next = await Promise.race(order.map((i) => pending.get(i) as Promise<Next>));
        if (next.failed !== undefined || next.result?.done) {
          pending.delete(next.index);
          continue;
        }
        pull(next.index);
        turn = next.index + 1;
        yield (next.result as IteratorYieldResult<Frame>).value;
      }
    } finally {
      await this.stop();
    }
  }

  async settle(frame: Frame, outcome: FrameOutcome): Promise<void> {
    const source = this.byName.get(frame.source);
    if (!source) throw new SgmoeError('E_SOURCE_UNKNOWN', `expected a frame from one of ${[...this.byName.keys()].join(', ')}, found one from ${frame.source}`);
    await source.settle(frame, outcome);
  }

  stats(): SourceStats[] {
    return this.sources.map((s) => s.stats());
  }

  async stop(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.stop()));
  }
}

const rank = (index: number, turn: number, n: number): number => (index - turn + n) % n;
