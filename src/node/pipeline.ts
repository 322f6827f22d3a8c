import type { ModelRef } from '../audit/record';
import type { Decision } from '../engine/decision';
import { errorCode, errorMessage } from '../errors';
import type { Frame } from '../ingest/frame';
import { preparerFor, type FramePreparer } from '../ingest/kinds';
import type { Logger } from '../log';
import type { ManifestInput } from '../model/manifest';
import type { MicroBatcher } from './batcher';
import type { NodeSource } from './edge-node';

export interface PipelineParts {
  batcher: MicroBatcher;
  /** Frames in preprocessing or waiting for their decision, per source. */
  window: number;
  logger: Logger;
  /** Where each frame ends, exactly once; the returned promise resolves when it is settled. */
  decided: (entry: NodeSource, frame: Frame, decision: Decision) => Promise<void>;
  rejected: (entry: NodeSource, frame: Frame, err: unknown, model: ModelRef) => Promise<void>;
  /** A frame the source yielded after its pump gave up on it (see `framesOf`): not decided, still accounted for. */
  abandoned: (entry: NodeSource, frame: Frame) => void;
}

type Handed = { decision: Promise<Decision> } | { error: unknown };

const GAVE_UP = Symbol('gave up');

/** A source that ended with an error (a folder that is not there, a camera that refused): not a clean end. */
export interface SourceFailure {
  source: string;
  code: string;
  message: string;
}

/** Frames of each source through preprocessing and the micro-batched engine, in arrival order. */
export class FramePipeline {
  /** Per model input spec, then per source: a swap to another input size gets fresh preprocessing. */
  private readonly preprocessors = new WeakMap<ManifestInput, Map<NodeSource, FramePreparer>>();
  private stopping = false;
  /** Sources whose stop failed: they may go on yielding, and their pumps take nothing more. */
  private readonly cutOff = new Set<NodeSource>();
  /** Per pump waiting for a frame: ends the wait (see `stop` and `cut`). */
  private readonly wakers = new Map<NodeSource, () => void>();

  constructor(private readonly parts: PipelineParts) {}

  /**
   * The node stops: each pump takes the frames its source already holds (a stopped source yields its queued frames at
   * once, then ends) and waits for no more, so a source whose frames never come cannot hold the stop.
   */
  stop(): void {
    this.stopping = true;
    for (const wake of this.wakers.values()) setImmediate(wake);
  }

  /** A source whose stop failed: its pump takes none of its frames from now on. */
  cut(entry: NodeSource): void {
    this.cutOff.add(entry);
    this.wakers.get(entry)?.();
  }

  /**
   * Pulls frames from one source, keeps up to `window` of them in flight (preprocessing runs concurrently on
   * sharp's threads) and hands them to the batcher in arrival order. Frames not yet settled hold their place in
   * the window, so a source whose frames wait for the disk stops being read. Ends with the source, or on `stop`.
   */
  async pump(entry: NodeSource): Promise<SourceFailure | null> {
    const { source } = entry;
    const inFlight = new Set<Promise<void>>();
    let handedOver: Promise<unknown> = Promise.resolve();
    let failure: SourceFailure | null = null;
    try {
      for await (const frame of this.framesOf(entry)) {
        // Handlers attach at once: a frame that fails to decode while the one before is still being prepared
        // must be rejected in its turn, not become an unhandled rejection.
        const prepared = this.preprocessorFor(entry)
          .toTensor(frame)
          .then(
            (tensor) => ({ tensor }),
            (error: unknown) => ({ error }),
          );
        // The next frame's hand-over waits for this hand-over (arrival order), not for this decision.
        const handed = handedOver.then(() => prepared).then((p): Handed => ('error' in p ? p : { decision: this.submit(p.tensor, frame.id) }));
        handedOver = handed;
        const model = this.parts.batcher.current.model;
        const done: Promise<void> = this.finish(entry, frame, handed, model).finally(() => inFlight.delete(done));
        inFlight.add(done);
        if (inFlight.size >= this.parts.window) await Promise.race(inFlight);
      }
    } catch (err) {
      failure = { source: source.name, code: errorCode(err), message: errorMessage(err) };
      this.parts.logger.error({ source: source.name, code: failure.code, err: failure.message }, 'source failed');
    }
    await Promise.all(inFlight);
    return failure;
  }

  /**
   * The source's frames, each wait for one raced against the stop: after `stop`, a wait that one turn of the event loop
   * does not answer ends the pump (what the source holds answers within it); after `cut`, there is no wait. What the
   * source yields after its pump gave up is `abandoned`, frame by frame, until it ends.
   */
  private async *framesOf(entry: NodeSource): AsyncGenerator<Frame, void, undefined> {
    const frames = entry.source[Symbol.asyncIterator]();
    let taking = false;
    try {
      while (!this.cutOff.has(entry)) {
        const asked = frames.next();
        const got = await Promise.race([asked, this.gaveUp(entry)]);
        if (got === GAVE_UP) return this.abandonRest(entry, frames, asked);
        if (got.done) return;
        taking = true;
        yield got.value;
        taking = false;
      }
      this.abandonRest(entry, frames, frames.next());
    } finally {
      this.wakers.delete(entry);
      // The pump left in the middle of a frame (its end threw): the source is stopped, as `for await` does.
      if (taking) await frames.return?.();
    }
  }

  private gaveUp(entry: NodeSource): Promise<typeof GAVE_UP> {
    return new Promise((resolve) => {
      const wake = () => resolve(GAVE_UP);
      this.wakers.set(entry, wake);
      if (this.stopping) setImmediate(wake);
    });
  }

  /**
   * The source's frames from `next` on, each `abandoned`, until the source ends (a stopped one yields what it queued,
   * then ends). Not awaited: a source that never ends must not hold the stop.
   */
  private abandonRest(entry: NodeSource, frames: AsyncIterator<Frame>, next: Promise<IteratorResult<Frame>>): void {
    const rest = async () => {
      for (let r = await next; !r.done; r = await frames.next()) this.parts.abandoned(entry, r.value);
    };
    rest().catch(() => undefined); // the source failed after its stop: its stop's outcome says so
  }

  private preprocessorFor(source: NodeSource): FramePreparer {
    const spec = this.parts.batcher.current.manifest.input;
    let bySource = this.preprocessors.get(spec);
    if (!bySource) this.preprocessors.set(spec, (bySource = new Map()));
    let pre = bySource.get(source);
    if (!pre) bySource.set(source, (pre = preparerFor(spec, source.preprocess)));
    return pre;
  }

  /** A decision promise that is never an unhandled rejection (it is awaited later, in the frame's turn). */
  private submit(tensor: Float32Array, frameId: string): Promise<Decision> {
    const decision = this.parts.batcher.submit(tensor, frameId);
    decision.catch(() => undefined);
    return decision;
  }

  /** One frame's end: decided or rejected, exactly once, whatever a listener, the audit log or the outbox throws. */
  private async finish(entry: NodeSource, frame: Frame, handed: Promise<Handed>, model: ModelRef): Promise<void> {
    const h = await handed;
    let decision: Decision;
    try {
      if ('error' in h) throw h.error;
      decision = await this.decisionOf(entry, frame, h.decision);
    } catch (err) {
      return this.parts.rejected(entry, frame, err, model);
    }
    return this.parts.decided(entry, frame, decision);
  }

  /** The frame's decision; a frame prepared for a model swapped out meanwhile is prepared again for the new one. */
  private async decisionOf(entry: NodeSource, frame: Frame, decision: Promise<Decision>): Promise<Decision> {
    try {
      return await decision;
    } catch (err) {
      if (errorCode(err) !== 'E_TENSOR_STALE') throw err;
      return this.parts.batcher.submit(await this.preprocessorFor(entry).toTensor(frame), frame.id);
    }
  }
}
