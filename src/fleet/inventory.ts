import { machineAlarmName } from '../maintenance/alarms';
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { SgmoeError } from '../errors';
import { healthPayloadSchema, statusPayloadSchema, topicsFor, type HealthPayload, type StatusPayload } from '../protocol';
import { currentUpdateSchema, fleetInfoSchema, lastUpdateSchema, type LastUpdate } from '../protocol/update';
import { bounded } from '../transport/bounded';

/** How long the broker has to hand over a site's retained messages, and to drop the subscription again. */
const READ_MS = 10_000;

/** One device of a site as its retained status and its latest health report tell it. */
export interface DeviceEntry {
  device: string;
  state: 'online' | 'offline' | 'unknown';
  /** Why it is offline: `shutdown` (a clean stop) or `lost` (the broker published its last will). */
  reason: string | null;
  /** The latest time the device said anything (status or health), ISO. */
  lastSeen: string | null;
  model: string | null;
  version: string | null;
  /** The sgmoe-edge release it runs (status info `sdk`). */
  sdk: string | null;
  /**
   * The update running now (`step version`), else how the last one ended (`last: outcome version code`); for a lost
   * device, followed by `(at connect)`: its last will was written then, and no later update state is known.
   */
  update: string | null;
  /** How its last update ended, as its status says (publish tells a reused correlation id's old outcome by it). */
  lastUpdate: LastUpdate | null;
  /** How long it watches its health after a swap before it reports an update done (`fleet.watch.windowMs`). */
  watchWindowMs: number | null;
  /** How often it publishes health. */
  healthIntervalMs: number | null;
  framesPerSecond: number | null;
  /** Active alarms and faults, by code or kind. */
  alarms: string[];
  /** It refuses a command that arrives after its signed `expires` (its status lists the field): only it is sent one. */
  checksExpiry: boolean;
}

export interface Inventory {
  site: string;
  devices: DeviceEntry[];
  /** Messages on the site's topics that did not match the protocol's schemas (a foreign or older publisher). */
  malformed: number;
}

export interface InventoryOptions {
  site: string;
  topicPrefix: string;
  /** Called on every later change, after the retained state was read (for `--watch`). */
  onChange?: (inventory: Inventory) => void;
}

/**
 * Reads every device of a site from the broker's retained status messages and the latest health reports. The
 * retained messages arrive right after the subscription; a marker message published after it comes back behind
 * them, so the first answer is complete without waiting out a guessed delay.
 */
export async function readInventory(client: MqttClient, options: InventoryOptions): Promise<{ inventory: Inventory; stop: () => Promise<void> }> {
  const wildcard = topicsFor({ topicPrefix: options.topicPrefix, site: options.site, device: '+' });
  const deviceOf = deviceMatcher(wildcard.prefix);
  const status = new Map<string, StatusPayload>();
  const health = new Map<string, HealthPayload>();
  let malformed = 0;
  let ready = false;
  const marker = `${wildcard.prefix.split('+')[0]}inventory/${randomUUID()}`;
  const snapshot = (): Inventory => ({ site: options.site, devices: entries(status, health), malformed });

  let markerSeen!: () => void;
  const markerBack = new Promise<void>((resolve) => (markerSeen = resolve));
  const onMessage = (topic: string, payload: Buffer): void => {
    if (topic === marker) return markerSeen();
    const device = deviceOf(topic);
    if (!device || payload.length === 0) return;
    const json = parseJson(payload);
    if (topic.endsWith('/status')) {
      const parsed = statusPayloadSchema.safeParse(json);
      if (parsed.success) status.set(device, parsed.data);
      else malformed++;
    } else {
      const parsed = healthPayloadSchema.safeParse(json);
      if (parsed.success) health.set(device, parsed.data);
      else malformed++;
    }
    if (ready) options.onChange?.(snapshot());
  };
  client.on('message', onMessage);
  const read = async (): Promise<void> => {
    await client.subscribeAsync([wildcard.status, wildcard.health, marker], { qos: 1 });
    await client.publishAsync(marker, '', { qos: 1 });
    await markerBack;
  };
  try {
    await bounded(client, read(), READ_MS, `reading site ${options.site}'s retained status`);
  } catch (err) {
    client.off('message', onMessage);
    throw err;
  }
  ready = true;
  return {
    inventory: snapshot(),
    stop: async () => {
      client.off('message', onMessage);
      await bounded(client, client.unsubscribeAsync([wildcard.status, wildcard.health, marker]), READ_MS, 'unsubscribing from the site');
    },
  };
}

/** Whether the device whose status this is refuses a command past its signed `expires` (older ones refuse the field). */
export function checksExpiry(status: StatusPayload): boolean {
  return status.envelopeFields?.includes('expires') ?? false;
}

/** The device id in a topic of the prefix whose device segment is the wildcard `+`. */
function deviceMatcher(prefix: string): (topic: string) => string | null {
  const [before, after] = prefix.split('+');
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${escape(before)}([^/]+)${escape(after ?? '')}(status|health)$`);
  return (topic) => pattern.exec(topic)?.[1] ?? null;
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
}

function entries(status: Map<string, StatusPayload>, health: Map<string, HealthPayload>): DeviceEntry[] {
  const ids = [...new Set([...status.keys(), ...health.keys()])].sort();
  return ids.map((device) => {
    const s = status.get(device);
    const h = health.get(device);
    const info = (s?.info ?? {}) as { model?: { name?: string; version?: string }; sdk?: unknown };
    const update = currentUpdateSchema.safeParse((s?.info ?? {}).update);
    const last = lastUpdateSchema.safeParse((s?.info ?? {}).lastUpdate);
    const fleet = fleetInfoSchema.safeParse((s?.info ?? {}).fleet);
    // Health is retained: an offline device's last report is history, not its frames/s or alarms now.
    const live = s?.state !== 'offline';
    const routing = (live ? (h?.routing ?? {}) : {}) as {
      framesPerSecond?: number;
      alarms?: Array<{ kind?: string; state?: string }>;
      conditionAlarms?: Array<{ kind?: string; machine?: string }>;
      faults?: Array<{ code?: string }>;
    };
    const alarms = [
      ...(routing.alarms ?? []).filter((a) => a.state === 'raised').map((a) => String(a.kind)),
      ...(routing.conditionAlarms ?? []).map((a) => machineAlarmName(String(a.kind), String(a.machine))),
      ...(routing.faults ?? []).map((f) => String(f.code)),
    ];
    const seen = [s?.ts, h?.ts].filter((t): t is string => t !== undefined).sort();
    // A last will is the status as it was at connect: a health report sent after that knows the model run since.
    const lost = s?.state === 'offline' && s.reason === 'lost';
    const reported = (h?.routing as { model?: { name?: unknown; version?: unknown } } | undefined)?.model;
    const model =
      lost && h && h.ts > (s.willSetAt ?? s.ts) && typeof reported?.name === 'string' && typeof reported.version === 'string'
        ? { name: reported.name, version: reported.version }
        : info.model;
    const updateText = update.success
      ? `${update.data.step} ${update.data.version}`
      : last.success
        ? `last: ${last.data.outcome} ${last.data.version}${last.data.error ? ` ${last.data.error.code}` : ''}`
        : null;
    return {
      device,
      state: s?.state ?? 'unknown',
      reason: s && s.state === 'offline' ? s.reason : null,
      lastSeen: seen.at(-1) ?? null,
      model: model?.name ?? null,
      version: model?.version ?? null,
      sdk: typeof info.sdk === 'string' ? info.sdk : null,
      update: updateText && lost ? `${updateText} (at connect)` : updateText,
      lastUpdate: last.success ? last.data : null,
      watchWindowMs: fleet.success ? fleet.data.watchWindowMs : null,
      healthIntervalMs: fleet.success ? (fleet.data.healthIntervalMs ?? null) : null,
      framesPerSecond: typeof routing.framesPerSecond === 'number' ? routing.framesPerSecond : null,
      alarms,
      checksExpiry: s ? checksExpiry(s) : false,
    };
  });
}

/** The operator's override of the offline check, named alike on publish, cmd and rollback. */
export const IGNORE_OFFLINE_STATUS_FLAG = '--ignore-offline-status';

/**
 * Refuses, at once and before anything is sent, targets that have never reported on this broker (naming the devices
 * that have), and targets whose retained status says offline: nodes connect with a clean session, so a command is
 * not kept for them and would only wait out its timeout. `ignoreOfflineStatus` lets the operator send anyway when
 * that status is stale. Returns what the broker knows of the site.
 */
export async function checkTargets(
  client: MqttClient,
  options: Omit<InventoryOptions, 'onChange'>,
  targets: string[],
  { ignoreOfflineStatus = false }: { ignoreOfflineStatus?: boolean } = {},
): Promise<Inventory> {
  const { inventory, stop } = await readInventory(client, options);
  await stop();
  const known = new Set(inventory.devices.map((d) => d.device));
  const unknown = targets.filter((t) => !known.has(t));
  if (unknown.length > 0) {
    const listing = known.size > 0 ? `devices that have reported there: ${[...known].join(', ')}` : 'no device has ever reported on that site';
    throw new SgmoeError('E_DEVICE_UNKNOWN', `no device ${unknown.join(', ')} has ever reported on site ${options.site} of this broker; ${listing}`, {
      unknown,
      known: [...known],
    });
  }
  const offline = inventory.devices.filter((d) => targets.includes(d.device) && d.state === 'offline');
  if (offline.length > 0 && !ignoreOfflineStatus) {
    const listed = offline.map((d) => `${d.device} (${d.reason ?? 'offline'}, last seen ${d.lastSeen ?? 'never'})`).join(', ');
    throw new SgmoeError(
      'E_DEVICE_OFFLINE',
      `offline by its retained status: ${listed}. A command is not kept for an offline device, so it would never get this one: ` +
        'start its node and send again once `sgmoe fleet status` shows it online, or leave it out. If it is online and its status is stale ' +
        `(an old session's last will, published after its new status), ${IGNORE_OFFLINE_STATUS_FLAG} sends anyway`,
      { offline: offline.map((d) => d.device) },
    );
  }
  return inventory;
}
