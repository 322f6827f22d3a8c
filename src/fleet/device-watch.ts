import type { z } from 'zod';
import { alarmPayloadSchema, healthPayloadSchema, replyPayloadSchema, statusPayloadSchema, type ReplyPayload, type StatusPayload } from '../protocol/payloads';
import { DEFAULT_TOPIC_PREFIX, topicsFor, type Topics } from '../protocol/topics';
import { currentUpdateSchema, fleetInfoSchema, lastUpdateSchema, updateProgressSchema, type LastUpdate, type UpdateStep } from '../protocol/update';
import { checksExpiry, type DeviceEntry } from './inventory';
import type { DeviceOutcome, DeviceProgress, Outcome, PublishOptions } from './publish';
import { describeIssues } from '../validate';

/** How far a device clock may be from ours (as for command envelopes): an older `lastUpdate` is another request's. */
const CLOCK_SKEW_MS = 300_000;

/** How long a final reply may trail the status that already says the request ended. */
const STATUS_GRACE_MS = 5_000;

/** Time a device gets after its announced health watch to report done (the last health sample, pruning). */
export const WATCH_GRACE_MS = 30_000;

/** What the operator hears from one device while its update runs. */
export class DeviceWatch {
  readonly topics: Topics;
  offline = false;
  /** How and when it went offline (`shutdown`, or `lost`: the broker published its last will). */
  private offlineReason: string | null = null;
  criticalAlarms: string[] = [];
  healthMessages = 0;
  /** Set while publish watches this canary after its update (`openWindow`). */
  private windowSince: number | null = null;
  /** The first time it went offline during that window: a restart within it is no healthy canary. */
  private offlineInWindow: string | null = null;
  /**
   * How its last update had ended before this request went out (null: none had; undefined: not known yet). Its
   * status repeats that until this request ends, even under the same correlation id (a reused --id).
   */
  private before: LastUpdate | null | undefined = undefined;
  /** From its retained status: the version it runs and its health watch window. */
  version: string | null = null;
  watchWindowMs: number | null = null;
  /** From its retained status: it refuses a command past its signed deadline, so its command carries one. */
  checksExpiry = false;
  step: UpdateStep | null = null;
  stepSince = 0;
  sentAt = 0;
  private deadline = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private settle: ((o: DeviceOutcome) => void) | null = null;
  private final: DeviceOutcome | null = null;

  constructor(
    readonly device: string,
    options: Pick<PublishOptions, 'site' | 'topicPrefix'>,
    private readonly correlationId: string,
    private readonly targetVersion: string,
    private readonly onProgress: (p: DeviceProgress) => void,
    private readonly onOutcome: (o: DeviceOutcome) => void,
    /** What became of the operator's broker connection, for a timeout's reason (null when nothing did). */
    private readonly brokerNote: () => string | null = () => null,
  ) {
    this.topics = topicsFor({ topicPrefix: options.topicPrefix ?? DEFAULT_TOPIC_PREFIX, site: options.site, device });
  }

  get subscriptions(): string[] {
    return [this.topics.reply('update'), this.topics.status, this.topics.health, this.topics.alarm];
  }

  /** Each message is checked against its schema; one that does not fit is reported and changes nothing. */
  onMessage(topic: string, json: unknown): string | null {
    if (topic === this.topics.status) {
      const status = check(statusPayloadSchema, json);
      if (typeof status === 'string') return status;
      this.offline = status.state === 'offline';
      this.offlineReason = status.state === 'offline' ? offlineText(status) : null;
      if (this.offlineReason && this.windowSince !== null) {
        this.offlineInWindow ??= `${this.offlineReason}; seen ${((Date.now() - this.windowSince) / 1000).toFixed(1)} s into the window`;
      }
      const model = status.info.model as { version?: unknown } | undefined;
      if (typeof model?.version === 'string') this.version = model.version;
      const fleet = fleetInfoSchema.safeParse(status.info.fleet);
      if (fleet.success) this.watchWindowMs = fleet.data.watchWindowMs;
      this.checksExpiry = checksExpiry(status);
      const last = lastUpdateSchema.safeParse(status.info.lastUpdate);
      // The first status after the subscription is the retained one, from before the request (unless known already).
      if (this.before === undefined) this.before = last.success ? last.data : null;
      const running = currentUpdateSchema.safeParse(status.info.update);
      if (running.success && running.data.correlationId === this.correlationId) {
        // This request runs on the device: the lastUpdate beside it is an earlier one's, whatever its id.
        if (this.statusTimer) clearTimeout(this.statusTimer);
        this.statusTimer = null;
      } else if (last.success) this.onLastUpdate(last.data);
    } else if (topic === this.topics.health) {
      const health = check(healthPayloadSchema, json);
      if (typeof health === 'string') return health;
      this.healthMessages += 1;
    } else if (topic === this.topics.alarm) {
      const alarm = check(alarmPayloadSchema, json);
      if (typeof alarm === 'string') return alarm;
      if (alarm.severity === 'critical') this.criticalAlarms.push(`${alarm.code}: ${alarm.message}`);
    } else if (topic === this.topics.reply('update')) {
      const reply = check(replyPayloadSchema, json);
      if (typeof reply === 'string') return reply;
      if (reply.id === this.correlationId) return this.onReply(reply);
    }
    return null;
  }

  /** Progress messages carry the agent's steps; the one final reply ends the update (ok, or an error). */
  private onReply(reply: ReplyPayload): string | null {
    if (!reply.ok) {
      // The version stays the device's own latest word: its status (republished with every step, so also after
      // a swap undone) goes out before this reply. The one from before the request may be stale by now.
      this.finish('failed', reply.error.code, reply.error.message);
      return null;
    }
    if (!reply.progress) {
      this.version = this.targetVersion;
      this.finish('done', null, null);
      return null;
    }
    const progress = check(updateProgressSchema, reply.data);
    if (typeof progress === 'string') return progress;
    if (progress.step !== this.step) {
      this.step = progress.step;
      this.stepSince = Date.now();
      this.onProgress({ device: this.device, step: progress.step, elapsedMs: this.elapsedMs(), message: progress.message, ...(progress.watchMs !== undefined ? { watchMs: progress.watchMs } : {}) });
    }
    if (progress.model) this.version = progress.model.version;
    // The device's own health watch comes on top of the time it had to get there.
    if (progress.step === 'watching') this.extendTo(Date.now() + (progress.watchMs ?? this.watchWindowMs ?? 0) + WATCH_GRACE_MS);
    return null;
  }

  /**
   * The retained status says how this request ended when its final reply never came: it was sent while the
   * device was cut from the broker, or the device restarted mid-update (and undid it: E_UPDATE_INTERRUPTED).
   */
  private onLastUpdate(last: LastUpdate): void {
    if (this.final || this.statusTimer || this.sentAt === 0) return;
    if (last.correlationId !== this.correlationId || Date.parse(last.ts) < this.sentAt - CLOCK_SKEW_MS) return;
    if (this.before && sameUpdate(last, this.before)) return;
    // The status goes out just before the final reply: give the reply its moment to arrive first.
    this.statusTimer = setTimeout(() => {
      if (last.outcome === 'done') {
        this.version = this.targetVersion;
        this.finish('done', null, null);
      } else {
        // Its status says what runs now (after a restart, not always what ran before the request).
        this.finish('failed', last.error?.code ?? 'E_CMD_FAILED', `${last.error?.message ?? `ended ${last.outcome}`} (told by the device's status; its final reply never came)`);
      }
    }, STATUS_GRACE_MS);
  }

  elapsedMs(): number {
    return this.sentAt === 0 ? 0 : Date.now() - this.sentAt;
  }

  private finish(outcome: Outcome, code: string | null, reason: string | null): void {
    if (this.final) return;
    if (this.timer) clearTimeout(this.timer);
    if (this.statusTimer) clearTimeout(this.statusTimer);
    this.final = { device: this.device, outcome, version: this.version, durationMs: this.elapsedMs(), code, reason, lastStep: this.step };
    this.onOutcome(this.final);
    this.settle?.(this.final);
  }

  /** What the operator read of the device before the request (`checkTargets`): no status message needed for it. */
  know(entry: Pick<DeviceEntry, 'version' | 'watchWindowMs'> & Partial<Pick<DeviceEntry, 'state' | 'reason' | 'lastSeen' | 'lastUpdate' | 'checksExpiry'>>): void {
    this.version = entry.version;
    this.watchWindowMs = entry.watchWindowMs;
    this.checksExpiry = entry.checksExpiry ?? false;
    if (entry.lastUpdate !== undefined) this.before = entry.lastUpdate;
    if (entry.state === 'offline') {
      this.offline = true;
      this.offlineReason = `${entry.reason ?? 'offline'} by its retained status, last seen ${entry.lastSeen ?? 'never'}`;
    }
  }

  /** Why the command is not sent (its status says offline: a command is not queued for it, it would never come), or null. */
  unreachable(): string | null {
    return this.offline ? `offline when its turn came (${this.offlineReason}): not sent, as no command is queued for an offline device` : null;
  }

  /** Starts the clock when the command goes out. */
  sent(timeoutMs: number): void {
    // No status read before the send: none that comes after it is from before the request.
    this.before ??= null;
    this.sentAt = Date.now();
    this.extendTo(this.sentAt + timeoutMs);
  }

  /** The rollout ended (or failed) without this device's outcome: its deadlines must not keep the process alive. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.statusTimer) clearTimeout(this.statusTimer);
  }

  private extendTo(deadline: number): void {
    if (this.final || deadline <= this.deadline) return;
    this.deadline = deadline;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.timeout(), Math.max(0, deadline - Date.now()));
  }

  private timeout(): void {
    const seen = this.step
      ? `last step seen: ${this.step}, ${((Date.now() - this.stepSince) / 1000).toFixed(1)} s ago`
      : 'the device never acknowledged the request (no step seen: is it online, and does it trust the operator key?)';
    const offline = this.offlineReason ? `; the device went offline (${this.offlineReason})` : '';
    const broker = this.brokerNote();
    this.finish('timeout', 'E_CMD_TIMEOUT', `no final reply after ${(this.elapsedMs() / 1000).toFixed(1)} s; ${seen}${offline}${broker ? `; ${broker}` : ''}`);
  }

  outcome(): Promise<DeviceOutcome> {
    if (this.final) return Promise.resolve(this.final);
    return new Promise((resolve) => (this.settle = resolve));
  }

  /** The device is left out: the rollout stopped before it, or it was offline when its turn came (`code`). */
  skip(reason: string, code: string | null = null): DeviceOutcome {
    const skipped: DeviceOutcome = { device: this.device, outcome: 'skipped', version: this.version, durationMs: 0, code, reason, lastStep: null };
    this.onOutcome(skipped);
    return skipped;
  }

  /** The canary window begins: what counts is what happens from now on. */
  openWindow(): void {
    this.windowSince = Date.now();
    this.healthMessages = 0;
    this.offlineInWindow = null;
  }

  /** Why this canary is not healthy at the end of its window, or null: offline at any moment of it counts. */
  unhealthy(): string | null {
    if (this.offline) return `offline at the end of the window (${this.offlineReason})`;
    if (this.offlineInWindow) return `went offline during the window (${this.offlineInWindow}), then came back: a restart is no healthy canary`;
    if (this.criticalAlarms.length > 0) return `critical alarm: ${this.criticalAlarms.join('; ')}`;
    if (this.healthMessages === 0) return 'published no health message during the window';
    return null;
  }
}

/** How and when a device went offline: a last will's time is that of the connect that set it (the loss came later). */
function offlineText(status: StatusPayload): string {
  return status.reason === 'lost' ? `lost; its last will was set at ${status.ts}, when it connected` : `${status.reason} at ${status.ts}`;
}

/** One update's end, told twice (the status repeats it with every republish). */
function sameUpdate(a: LastUpdate, b: LastUpdate): boolean {
  return a.ts === b.ts && a.correlationId === b.correlationId && a.outcome === b.outcome && a.version === b.version;
}

/** The value when it fits the schema, else what is wrong with it. */
function check<T>(schema: z.ZodType<T>, value: unknown): T | string {
  const result = schema.safeParse(value);
  return result.success ? result.data : describeIssues(result.error).join('; ');
}
