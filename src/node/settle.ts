import type { AuditLog } from '../audit/audit-log';
import type { AuditRecord } from '../audit/record';
import type { Decision } from '../engine/decision';
import { SgmoeError, errorCode, errorMessage } from '../errors';
import type { Frame } from '../ingest/frame';
import { windowPlace } from '../ingest/kinds/signal/window-source';
import type { FrameOutcome, FrameSource } from '../ingest/source';
import type { Logger } from '../log';
import type { MqttTransport } from '../transport/client';
import type { NodeStats } from './stats';

/** One frame's outcome on its way to the disk: its audit row, its MQTT result (decided frames), its source. */
export interface Outcome {
  source: FrameSource;
  frame: Frame;
  record: AuditRecord;
  decision?: Decision;
  outcome: FrameOutcome;
  /**
   * Resolves once the record names the frame's bytes: a raw frame's PNG, encoded aside. Its result goes out at once;
   * its row waits for the name.
   */
  named?: Promise<void>;
}

interface Pending extends Outcome {
  audited: boolean;
  queued: boolean;
  done: () => void;
}

export interface SettlerParts {
  audit?: AuditLog;
  transport: () => MqttTransport | undefined;
  stats: NodeStats;
  /** Called after every commit: the error when the disk refused it, null when it took everything. */
  onCommit: (failure: SgmoeError | null) => void;
  logger: Logger;
  /** Wait before committing held frames again, doubling from min to max while the disk stays full. */
  retryMs?: { min: number; max: number };
}

const RETRY_MS = { min: 250, max: 5000 };
/**
 * The audit commit waits this long after the results went out, so it is off the way from a decision to the
 * broker (bench:pipeline, one frame at a time: the broker's forwarding and the next frame come first), and under
 * load one commit takes several engine batches. Frames settle that much later; it is far below the time a frame
 * takes, so a source's window of frames in flight is not held up.
 */
const AUDIT_DELAY_MS = 1;

/**
 * Commit, then settle. A frame is settled with its source (a hot-folder file moves to done/) only after its audit
 * row and its MQTT result are committed: a kill at any moment leaves every settled frame audited and queued, and
 * every other frame to be taken again (a hot folder's file whose row is there is only moved). Results go first: the
 * outcomes of one event-loop turn (one engine batch) are stored in the outbox and sent at once; their audit rows
 * follow a moment later (AUDIT_DELAY_MS), once the event loop has handled what came in meanwhile, in one commit
 * with those of the other turns of that moment. A raw frame's row waits for the PNG it names (`named`); its result does not.
 *
 * When the commit fails (a full disk), frames of a source that replays them (`FrameSource.replays`) are held,
 * not settled, and committed again with backoff until the disk takes them; their source, waiting on them, stops
 * taking new frames meanwhile. Frames of live sources cannot wait: they are settled and counted as unaudited or
 * unpublished.
 */
export class Settler {
  /** Outcomes of this turn, whose results go to the outbox when it ends. */
  private unsent: Pending[] = [];
  /** Outcomes whose audit rows wait for the next commit. */
  private uncommitted: Pending[] = [];
  private commitTimer: NodeJS.Timeout | null = null;
  private held: Pending[] = [];
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly retry: { min: number; max: number };
  private retryMs: number;
  private released = false;

  constructor(private readonly parts: SettlerParts) {
    this.retry = parts.retryMs ?? RETRY_MS;
    this.retryMs = this.retry.min;
  }

  /** Resolves once the frame is settled (or, on stop, left unsettled with a source that replays it). */
  settle(outcome: Outcome): Promise<void> {
    return new Promise((done) => this.enqueue({ ...outcome, audited: false, queued: false, done }));
  }

  /** On stop: held frames stay unsettled (a hot-folder file stays in the inbox for the next start). */
  release(): void {
    this.released = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    for (const p of this.held.splice(0)) p.done();
  }

  private enqueue(...pending: Pending[]): void {
    if (pending.length === 0) return;
    if (this.unsent.push(...pending) === pending.length) setImmediate(() => this.sendTurn());
  }

  /** The turn's results into the outbox, which sends them; a failure is left for the commit to retry and report. */
  private sendTurn(): void {
    const turn = this.unsent;
    this.unsent = [];
    try {
      this.queueResults(turn);
    } catch {
      // the commit tries again, and says what went wrong
    }
    const ready: Pending[] = [];
    for (const p of turn) {
      const { named } = p;
      if (!named) {
        ready.push(p);
        continue;
      }
      p.named = undefined; // named once: a retried commit does not wait again
      const commit = () => this.toCommit([p]);
      void named.then(commit, commit);
    }
    this.toCommit(ready);
  }

  /** Rows for the next commit, a moment from now (AUDIT_DELAY_MS). */
  private toCommit(pending: Pending[]): void {
    if (pending.length === 0) return;
    this.uncommitted.push(...pending);
    this.commitTimer ??= setTimeout(() => {
      this.commitTimer = null;
      void this.commitTurn();
    }, AUDIT_DELAY_MS);
  }

  private async commitTurn(): Promise<void> {
    const turn = this.uncommitted;
    this.uncommitted = [];
    const failure = this.commit(turn);
    const settled: Pending[] = [];
    for (const p of turn) {
      if (p.audited && p.queued) settled.push(p);
      else if (p.source.replays && this.released) p.done();
      else if (p.source.replays) this.held.push(p);
      else {
        this.parts.stats.settledUncommitted(p.audited, p.queued);
        settled.push(p);
      }
    }
    this.parts.onCommit(failure);
    if (failure) this.scheduleRetry();
    else {
      this.retryMs = this.retry.min;
      this.enqueue(...this.held.splice(0));
    }
    await Promise.all(
      settled.map((p) =>
        p.source
          .settle(p.frame, p.outcome)
          .catch((err: unknown) => this.parts.logger.error({ frameId: p.frame.id, code: errorCode(err), err: errorMessage(err) }, 'could not settle a frame with its source'))
          .finally(p.done),
      ),
    );
  }

  /**
   * The results not queued yet, then the audit rows: of a source that replays its frames only those whose result is
   * queued, so that such a row means its result was (a hot folder moves a file a kill left after its row, see
   * DirSource's `settledBefore`); of a live source all, since its frames cannot wait. Each part committed is not
   * committed again on a retry.
   */
  private commit(turn: Pending[]): SgmoeError | null {
    let unqueued: SgmoeError | null = null;
    let unaudited: SgmoeError | null = null;
    try {
      this.queueResults(turn);
    } catch (err) {
      unqueued = asSgmoeError(err);
    }
    const { audit } = this.parts;
    const rows = turn.filter((p) => !p.audited && (p.queued || !p.source.replays));
    try {
      if (audit && rows.length > 0) audit.commit(rows.map((p) => p.record));
      for (const p of rows) p.audited = true;
    } catch (err) {
      unaudited = asSgmoeError(err);
    }
    const failure = unaudited ?? unqueued;
    if (failure) this.parts.logger.error({ code: failure.code, err: failure.message, frames: turn.length }, 'frames not committed');
    return failure;
  }

  /**
   * Stores the results (and the rejections) not queued yet in one outbox transaction (which sends them); throws when
   * it could not.
   */
  private queueResults(turn: readonly Pending[]): void {
    const transport = this.parts.transport();
    const unqueued = turn.filter((p) => !p.queued);
    if (transport && unqueued.length > 0) {
      const ts = new Date();
      const results = unqueued.flatMap((p) => (p.decision ? [{ decision: p.decision, frame: { source: p.frame.source, ts, window: windowPlace(p.frame) } }] : []));
      const rejections = unqueued.flatMap(({ record, frame }) =>
        record.status === 'rejected' && record.model ? [{ frameId: frame.id, error: record.error, model: record.model, frame: { source: frame.source, ts } }] : [],
      );
      transport.publishResults(results, rejections);
    }
    for (const p of unqueued) p.queued = true;
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.released || this.held.length === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.enqueue(...this.held.splice(0));
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, this.retry.max);
  }
}

const asSgmoeError = (err: unknown) => (err instanceof SgmoeError ? err : new SgmoeError('E_INTERNAL', errorMessage(err), undefined, { cause: err }));
