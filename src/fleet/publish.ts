import { randomUUID, type KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import { silentLogger, type Logger } from '../log';
import type { UpdateRequestInput, UpdateStep } from '../protocol/update';
import { BrokerLink, describeOutage } from './broker';
import { bounded } from '../transport/bounded';
import { commandExpiry, signCommand } from './command-signature';
import { publishCommand } from './outgoing-command';
import { DeviceWatch } from './device-watch';
import type { DeviceEntry } from './inventory';

export { WATCH_GRACE_MS } from './device-watch';

/** How long the subscriptions' removal may take once every device answered (the broker may be gone by then). */
const UNSUBSCRIBE_MS = 2_000;

export interface PublishOptions {
  /** A connected mqtt.js client. */
  client: MqttClient;
  site: string;
  /** Default `sgmoe/v1/{site}/{device}/`. */
  topicPrefix?: string;
  /** Every device to update; canaries listed here too are updated only once, first. */
  devices: string[];
  /** Updated first; the rest follow only if each canary finishes its update and stays healthy for the window. */
  canary?: string[];
  request: UpdateRequestInput;
  /** The operator key that signs each device's command envelope (devices refuse unsigned updates). */
  key: KeyObject;
  correlationId?: string;
  /**
   * How long a device has to reach its health watch (download, verify, self-test, swap). Its own watch is added
   * once it starts (the `watching` step says how long; WATCH_GRACE_MS on top), so a watch is never cut short.
   */
  replyTimeoutMs: number;
  /** How long canaries are watched after their update: they must stay online, raise no critical alarm and report health. */
  canaryWindowMs: number;
  /** Each device's step as it changes. */
  onProgress?: (progress: DeviceProgress) => void;
  /**
   * What the operator already read of the devices (`checkTargets`): versions, health watch windows, and (when given)
   * whether each is online and how its last update ended, so that a reused correlation id's old outcome is not taken
   * for this request's.
   */
  known?: Array<Pick<DeviceEntry, 'device' | 'version' | 'watchWindowMs'> & Partial<Pick<DeviceEntry, 'state' | 'reason' | 'lastSeen' | 'lastUpdate' | 'checksExpiry'>>>;
  /** Send to a device whose status says offline (a stale last will, the operator knows better) and wait as usual. */
  ignoreOfflineStatus?: boolean;
  /** Each device's outcome as soon as it is known. */
  onOutcome?: (outcome: DeviceOutcome) => void;
  /** Each phase of the rollout as it begins (the canaries' watch time is announced here). */
  onPhase?: (phase: RolloutPhase) => void;
  logger?: Logger;
}

export interface DeviceProgress {
  device: string;
  step: UpdateStep;
  /** Since the command was sent to this device. */
  elapsedMs: number;
  message: string;
  /** On `watching`: how long the device watches its health. */
  watchMs?: number;
}

export type RolloutPhase =
  | { phase: 'canary'; devices: string[]; watchMs: number | null; windowMs: number }
  | { phase: 'canary-window'; devices: string[]; windowMs: number }
  | { phase: 'rollout'; devices: string[] }
  | { phase: 'stopped'; devices: string[]; reason: string };

export type Outcome = 'done' | 'failed' | 'timeout' | 'unhealthy' | 'skipped';

/** How one device's update ended, for the final table. */
export interface DeviceOutcome {
  device: string;
  outcome: Outcome;
  /** The version the device runs at the end, as it last reported (null when it never said). */
  version: string | null;
  /** From the command to the outcome (0 for a device never sent the command). */
  durationMs: number;
  code: string | null;
  reason: string | null;
  /** The last step the device reported. */
  lastStep: UpdateStep | null;
}

export interface PublishReport {
  correlationId: string;
  /** Null without canaries. */
  canary: { ok: boolean; devices: DeviceOutcome[] } | null;
  /** The devices after the canaries; `skipped` when the canaries stopped the rollout. */
  devices: DeviceOutcome[];
  ok: boolean;
}

/**
 * Sends an `update` command ({id: correlationId, envelope} on `cmd/update`) to each device by its own topic
 * (no wildcard publish, so every device is named and answers), following each device's steps as they come.
 * With canaries: they go first, and the rest only once every canary reported done and then stayed healthy for
 * `canaryWindowMs`. A device whose status says offline when its turn comes is skipped (E_DEVICE_OFFLINE): a
 * command is not queued for it (unless `ignoreOfflineStatus`). A lost broker is waited for within each device's own deadline.
 */
export async function publishUpdate(options: PublishOptions): Promise<PublishReport> {
  const { client } = options;
  const log = (options.logger ?? silentLogger).child({ module: 'publish' });
  const correlationId = options.correlationId ?? randomUUID();
  const canaries = options.canary ?? [];
  const rest = options.devices.filter((d) => !canaries.includes(d));
  const onProgress = (p: DeviceProgress): void => {
    log.info({ ...p }, 'update step');
    options.onProgress?.(p);
  };
  const link = new BrokerLink(client);
  const brokerNote = (): string | null => {
    const outage = link.outages.at(-1);
    return outage ? describeOutage(outage) : null;
  };
  const watches = new Map(
    [...canaries, ...rest].map((d) => [d, new DeviceWatch(d, options, correlationId, options.request.version, onProgress, (o) => options.onOutcome?.(o), brokerNote)]),
  );
  for (const entry of options.known ?? []) watches.get(entry.device)?.know(entry);
  const byTopic = new Map([...watches.values()].flatMap((w) => w.subscriptions.map((t) => [t, w] as const)));
  const onMessage = (topic: string, payload: Buffer): void => {
    const watch = byTopic.get(topic);
    if (!watch || payload.length === 0) return;
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch {
      log.warn({ topic }, 'ignoring a message that is not JSON');
      return;
    }
    const problem = watch.onMessage(topic, json);
    if (problem) log.warn({ topic, problem }, 'ignoring a message that does not fit its schema');
  };
  client.on('message', onMessage);

  const send = (devices: string[]): Promise<DeviceOutcome[]> =>
    Promise.all(
      devices.map(async (device) => {
        const watch = watches.get(device)!;
        const unreachable = options.ignoreOfflineStatus ? null : watch.unreachable();
        if (unreachable) return watch.skip(unreachable, 'E_DEVICE_OFFLINE');
        // Its clock starts now: while the broker is away, mqtt.js holds the command until it is back, within that deadline.
        watch.sent(options.replyTimeoutMs);
        const expires = watch.checksExpiry ? commandExpiry(watch.sentAt, options.replyTimeoutMs) : undefined;
        const envelope = signCommand({ command: 'update', site: options.site, device, id: correlationId, args: options.request, expires }, options.key);
        const outgoing = publishCommand(client, watch.topics.command('update'), JSON.stringify({ id: correlationId, envelope }));
        await Promise.race([outgoing.acked.then(() => log.info({ device, correlationId }, 'update sent')), watch.outcome()]);
        const outcome = await watch.outcome();
        // Timed out with the command still queued (the broker away since): it must not reach the device late.
        outgoing.withdraw();
        return outcome;
      }),
    );

  try {
    await bounded(client, client.subscribeAsync([...byTopic.keys()], { qos: 1 }), options.replyTimeoutMs, 'subscribing to the devices\' replies and status');
    let canary: PublishReport['canary'] = null;
    if (canaries.length > 0) {
      const windows = canaries.map((d) => watches.get(d)!.watchWindowMs).filter((w): w is number => w !== null);
      options.onPhase?.({ phase: 'canary', devices: canaries, watchMs: windows.length > 0 ? Math.max(...windows) : null, windowMs: options.canaryWindowMs });
      let outcomes = await send(canaries);
      if (outcomes.every((o) => o.outcome === 'done')) {
        for (const w of watches.values()) w.openWindow();
        options.onPhase?.({ phase: 'canary-window', devices: canaries, windowMs: options.canaryWindowMs });
        const windowFrom = Date.now();
        await sleep(options.canaryWindowMs);
        // Unseen is not healthy: a canary restarted while the broker was away would otherwise pass. The broker said
        // first: stopping, it publishes every device's last will, which is no restart of theirs.
        const outage = link.during(windowFrom, Date.now());
        outcomes = outcomes.map((o) => {
          const reasons = [outage && `not watched the whole window: ${describeOutage(outage)}`, watches.get(o.device)!.unhealthy()].filter((r): r is string => Boolean(r));
          return reasons.length > 0 ? { ...o, outcome: 'unhealthy', code: 'E_CANARY_UNHEALTHY', reason: reasons.join('; ') } : o;
        });
      }
      canary = { ok: outcomes.every((o) => o.outcome === 'done'), devices: outcomes };
      if (!canary.ok) {
        const reason = 'canaries not healthy: the rollout stopped before this device';
        log.warn({ canary: outcomes }, 'canaries not healthy: the rollout stops here');
        options.onPhase?.({ phase: 'stopped', devices: rest, reason });
        return { correlationId, canary, devices: rest.map((d) => watches.get(d)!.skip(reason)), ok: false };
      }
    }
    if (rest.length > 0) options.onPhase?.({ phase: 'rollout', devices: rest });
    const devices = await send(rest);
    return { correlationId, canary, devices, ok: devices.every((o) => o.outcome === 'done') };
  } finally {
    for (const watch of watches.values()) watch.dispose();
    client.removeListener('message', onMessage);
    link.stop();
    await bounded(client, client.unsubscribeAsync([...byTopic.keys()]), UNSUBSCRIBE_MS, 'unsubscribing').catch(() => undefined);
  }
}
