import { dirname, join } from 'node:path';
import mqtt from 'mqtt';
import type { AuditLog } from '../audit/audit-log';
import type { AuditEvent } from '../audit/events';
import type { EngineOptions } from '../engine/engine';
import { UpdateAgent, type UpdateEvent } from '../fleet/agent';
import { fetchChunks } from '../fleet/chunks';
import { readPublicKey, TrustedKeys } from '../fleet/keys';
import { PackageStore, type Recovery } from '../fleet/store';
import type { Logger } from '../log';
import { CommandAuthoriser } from '../transport/authorise';
import { clientIdOf, connectOptionsFor, type TransportConfig } from '../transport/config';
import type { NodeConfig } from './config';
import type { EdgeNode } from './edge-node';
import { UpdateStatus, updateAuditEvents } from './update-trail';
import { FINAL_UPDATE_STEPS, PROGRESS_STEPS, type FleetInfo } from '../protocol/update';

type FleetConfig = NonNullable<NodeConfig['fleet']>;

/**
 * Before any engine loads: finish or undo a half-done update (a power loss mid-update), adopt the configured
 * package on first boot, and return the verified package the device runs now.
 */
export async function openPackageStore(
  fleet: FleetConfig,
  initialModel: string,
  logger: Logger,
): Promise<{ store: PackageStore; modelDir: string; recovery: Recovery }> {
  const store = new PackageStore(fleet.root, fleet.keep);
  try {
    const recovery = await store.recover();
    if (recovery.action !== 'none') {
      logger.warn({ action: recovery.action, state: recovery.state }, 'an update was interrupted by a restart: undone');
    }
    return { store, modelDir: recovery.currentDir ?? (await store.adopt(initialModel)), recovery };
  } catch (err) {
    // Held from `recover` on: a start that fails here must not keep the store from the next one in this process.
    await store.lock.release().catch(() => undefined);
    throw err;
  }
}

/** What a restart undid, for the audit log's events (the node logs it too). */
export function recoveryEvent(recovery: Recovery): AuditEvent | null {
  if (recovery.action === 'none') return null;
  return {
    kind: 'model_rolled_back',
    message: `restart during an update (${recovery.state?.step}): ${recovery.action === 'rolled_back' ? 'swap undone' : 'update abandoned'}`,
    details: { action: recovery.action, state: recovery.state },
  };
}

/**
 * Who may change this device over MQTT: the operator keys of `mqtt.commands.trustedKeys`, else those that sign
 * its packages (`fleet.trustedKeys`). With neither, every state-changing command is refused.
 */
export async function commandAuthoriser(config: TransportConfig, fleetKeys: string[] | undefined, outboxPath: string, logger: Logger): Promise<CommandAuthoriser> {
  const paths = config.commands.trustedKeys ?? fleetKeys ?? [];
  if (paths.length === 0) logger.warn('no operator keys configured: the commands that change what the device decides or runs (set-threshold, set-false-alarm-rate, update, rollback) will be refused');
  return new CommandAuthoriser({
    keys: paths.length > 0 ? await readTrustedKeys(paths) : null,
    site: config.site,
    device: config.device,
    windowMs: config.commands.freshnessS * 1000,
    nonceFile: config.commands.nonceFile ?? join(dirname(outboxPath), 'command-nonces.json'),
    logger,
  });
}

async function readTrustedKeys(paths: string[]): Promise<TrustedKeys> {
  return new TrustedKeys(await Promise.all(paths.map((path) => readPublicKey(path))));
}

export interface UpdateAgentWiring {
  store: PackageStore;
  node: EdgeNode;
  fleet: FleetConfig;
  engine: EngineOptions;
  /** How often the node publishes health (announced with the watch window, for publish's canary check). */
  healthIntervalMs: number;
  transportConfig?: TransportConfig;
  audit?: AuditLog;
  logger: Logger;
}

/**
 * The device's update agent with the node as its engine host and health probe. Each step that is not final goes
 * to `cmd/update/reply` as a progress message (the final reply is the command's own answer); each changes the
 * retained status (`update` while it runs, `lastUpdate` once it ended) and leaves an audit event with the
 * request's correlation id (a model change also restarts routing health against the new calibration).
 */
export async function createUpdateAgent(w: UpdateAgentWiring): Promise<UpdateAgent> {
  const status = new UpdateStatus();
  // After a restart the status still says how the last update ended (the store kept it, with its time).
  const last = await w.store.readState();
  if (last && FINAL_UPDATE_STEPS.has(last.step)) {
    status.apply({ correlationId: last.correlationId, step: last.step, version: last.version, message: '', ...(last.error ? { error: last.error } : {}), ts: last.updatedAt });
  }
  let fleet: FleetInfo | undefined;
  const onEvent = (event: UpdateEvent) => {
    status.apply(event);
    w.node.setFleetStatus({ ...status.info(), fleet });
    if (event.correlationId && PROGRESS_STEPS.has(event.step)) w.node.transport?.publishProgress('update', event.correlationId, event);
    if (event.model) {
      const kind = event.step === 'rolled_back' ? 'model_rolled_back' : 'model_updated';
      w.audit?.modelChanged(kind, event.model, { correlationId: event.correlationId, keyId: event.keyId ?? null, step: event.step, ...(event.error ? { code: event.error.code } : {}) });
    }
    for (const audited of updateAuditEvents(event)) w.audit?.event(audited);
  };
  const url = w.transportConfig?.url;
  const agent: UpdateAgent = new UpdateAgent({
    store: w.store,
    host: w.node,
    probe: w.node,
    trustedKeys: await readTrustedKeys(w.fleet.trustedKeys),
    engine: w.engine,
    limits: w.fleet.limits,
    watch: w.fleet.watch,
    onEvent,
    logger: w.logger,
    // Sites without HTTP get packages as retained chunks on their broker, over a connection of their own.
    ...(url
      ? {
          fetchChunks: async (ref, dest, limits, signal) => {
            const config = w.transportConfig!;
            const client = await mqtt.connectAsync(url, connectOptionsFor(config, `${clientIdOf(config)}-package`));
            try {
              await fetchChunks(client, ref, dest, limits.downloadTimeoutMs, signal);
            } finally {
              await client.endAsync();
            }
          },
        }
      : {}),
  });
  fleet = { watchWindowMs: agent.watchWindowMs, healthIntervalMs: w.healthIntervalMs };
  w.node.setFleetStatus({ ...status.info(), fleet });
  return agent;
}
