/**
 * MQTT transport throughput against a local mosquitto: results/s through the persistent outbox (QoS 0
 * and 1, SQLite synchronous=normal and full) vs raw mqtt.js `publish` of the same payloads (the floor),
 * and the drain rate of a 50,000-result backlog after an outage. Run: npx tsx scripts/bench/transport.ts
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { resultPayload } from '../../src/protocol';
import { MqttTransport, Outbox, parseTransportConfig, type TransportConfigInput } from '../../src/transport';
import { tempDir } from '../../test/helpers/tmp';
import { Mosquitto } from '../../test/helpers/mqtt';
import { decision } from '../../test/transport/support';
import { median, printComparison, printHeader, type Row } from './lib';

const RESULTS = Number(process.env.BENCH_RESULTS ?? 20_000);
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 50_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TOPIC = 'sgmoe/v1/bench/dev/result';
const DEFAULTS = parseTransportConfig({ url: 'mqtt://localhost', site: 's', device: 'd' });
const DEFAULT_SYNCHRONOUS = DEFAULTS.outbox.synchronous;
const DEFAULT_IN_FLIGHT = DEFAULTS.inFlight;
const tmp = tempDir('sgmoe-bench-transport-');
let dbs = 0;

const frame = { source: 'bench', ts: new Date() };
const payloads = Array.from({ length: Math.max(RESULTS, BACKLOG) }, (_, i) => JSON.stringify(resultPayload(decision(`b-${i}`), frame)));

/** Polls on a 1 ms timer rather than every turn: a busy wait would count as the waiting process's CPU per result. */
async function settle(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 1));
}

/** A run's results/s and this process's CPU time per result (µs): the cost of a path, steadier than its rate. */
interface Measured {
  rate: number;
  cpuUs: number;
}

function meter(count: number): () => Measured {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  return () => {
    const cpu = process.cpuUsage(cpu0);
    return { rate: count / (Number(process.hrtime.bigint() - t0) / 1e9), cpuUs: (cpu.user + cpu.system) / count };
  };
}

/**
 * The floor: mqtt.js publishes of the same payloads, no outbox; done when every callback fired (PUBACK for QoS 1).
 * `serialise`: each payload is built from its decision as it is published, as any publisher of results must.
 */
async function raw(url: string, qos: 0 | 1, count: number, serialise = false): Promise<Measured> {
  const client = await mqtt.connectAsync(url, { clientId: `raw-${qos}-${count}` });
  client.stream.setMaxListeners(0); // QoS 0 publishes all wait for 'drain' on the socket: expected here
  const decisions = serialise ? Array.from({ length: count }, (_, i) => decision(`b-${i}`)) : [];
  const measured = meter(count);
  let done = 0;
  for (let i = 0; i < count; i++) {
    const payload = serialise ? JSON.stringify(resultPayload(decisions[i], frame)) : payloads[i];
    client.publish(TOPIC, payload, { qos }, () => done++);
  }
  await settle(() => done === count);
  const result = measured();
  await client.endAsync();
  return result;
}

function transport(url: string, extra: TransportConfigInput) {
  const config = parseTransportConfig({ url, site: 'bench', device: 'dev', reconnect: { minMs: 20, maxMs: 50 }, ...extra });
  const outbox = Outbox.open(join(tmp.path, `outbox-${++dbs}.db`), { maxResults: 1_000_000, synchronous: config.outbox.synchronous });
  return { transport: new MqttTransport({ config, outbox }), outbox };
}

/**
 * Through the outbox while online: results are enqueued `batch` at a time, one transaction (one fsync) each, as
 * the node commits the decisions of one engine batch; done when every one was sent, acknowledged and deleted.
 */
async function viaOutbox(url: string, extra: TransportConfigInput, count: number, batch: number): Promise<Measured> {
  const { transport: t, outbox } = transport(url, extra);
  await t.start();
  const results = Array.from({ length: count }, (_, i) => ({ decision: decision(`b-${i}`), frame }));
  const measured = meter(count);
  for (let i = 0; i < count; i += batch) {
    t.publishResults(results.slice(i, i + batch));
    // Yield after each batch, as a node between two engine batches does, so PUBACKs are read while enqueueing.
    await new Promise((r) => setImmediate(r));
  }
  await settle(() => outbox.stats().pending === 0);
  const result = measured();
  await t.stop();
  outbox.close();
  return result;
}

/** A backlog queued while the broker was down, drained once it is back: results/s from reconnect to empty. */
async function drain(broker: Mosquitto, extra: TransportConfigInput): Promise<{ rate: number; enqueueRate: number }> {
  await broker.stop();
  const { transport: t, outbox } = transport(broker.url, extra);
  await t.start();
  const e0 = process.hrtime.bigint();
  const results = Array.from({ length: BACKLOG }, (_, i) => ({ decision: decision(`d-${i}`), frame }));
  for (let i = 0; i < BACKLOG; i += BATCH) t.publishResults(results.slice(i, i + BATCH));
  const enqueueRate = BACKLOG / (Number(process.hrtime.bigint() - e0) / 1e9);
  await broker.start();
  await settle(() => t.stats().state === 'online');
  const t0 = process.hrtime.bigint();
  await settle(() => outbox.stats().pending === 0);
  const rate = BACKLOG / (Number(process.hrtime.bigint() - t0) / 1e9);
  await t.stop();
  outbox.close();
  return { rate, enqueueRate };
}

interface Case {
  name: string;
  note: string;
  run: () => Promise<Measured>;
}

/**
 * Every case once per round, the rounds one after another, so a slow spell of the machine touches every case alike.
 * The note adds each case's median CPU time per result in this process (the broker's is not counted).
 */
async function inRounds(cases: Case[]): Promise<Row[]> {
  const runs: Measured[][] = cases.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, c] of cases.entries()) runs[i].push(await c.run());
  }
  return cases.map((c, i) => ({
    name: c.name,
    value: median(runs[i].map((r) => r.rate)),
    unit: 'results/s',
    note: `${c.note}; CPU ${median(runs[i].map((r) => r.cpuUs)).toFixed(1)} µs/result`,
  }));
}

async function main(): Promise<void> {
  // `mosquitto -h` prints its version and exits non-zero.
  const mosquittoVersion = spawnSync('mosquitto', ['-h'], { encoding: 'utf8' }).stdout.split('\n')[0].replace('mosquitto version ', '');
  printHeader('MQTT transport: outbox vs raw publish, backlog drain', { mosquitto: mosquittoVersion });
  console.log(`results per run: ${RESULTS}, enqueued ${BATCH} per transaction, backlog: ${BACKLOG}, payload: ${payloads[0].length} bytes, broker: local mosquitto on 127.0.0.1`);
  const broker = await Mosquitto.create(tmp.path, ['persistence false']);
  await broker.start();
  try {
    // Warm-up of both paths (JIT, broker, SQLite), so the first round of neither is penalised.
    await raw(broker.url, 1, 2000);
    await viaOutbox(broker.url, { resultQos: 1 }, 2000, BATCH);
    for (const qos of [0, 1] as const) {
      const cases: Case[] = [
        { name: `raw publish QoS ${qos}`, note: 'floor: no outbox, payloads built beforehand', run: () => raw(broker.url, qos, RESULTS) },
        { name: `raw publish QoS ${qos}, serialising`, note: 'each payload built from its decision when published', run: () => raw(broker.url, qos, RESULTS, true) },
        ...(['normal', 'full'] as const).map((synchronous) => ({
          name: `outbox QoS ${qos}, synchronous=${synchronous}${synchronous === DEFAULT_SYNCHRONOUS ? ' (default)' : ''}`,
          note: `enqueued ${BATCH} per transaction (one engine batch), window ${DEFAULT_IN_FLIGHT}`,
          run: () => viaOutbox(broker.url, { resultQos: qos, outbox: { synchronous } }, RESULTS, BATCH),
        })),
        ...(qos === 1
          ? [{
              name: `outbox QoS 1, synchronous=${DEFAULT_SYNCHRONOUS} (default), window 1000`,
              note: `inFlight: 1000 (default ${DEFAULT_IN_FLIGHT}): more PUBACKs awaited at once`,
              run: () => viaOutbox(broker.url, { resultQos: 1, inFlight: 1000 }, RESULTS, BATCH),
            }]
          : []),
        {
          name: `outbox QoS ${qos}, synchronous=${DEFAULT_SYNCHRONOUS} (default), 1 per transaction`,
          note: `worst case: one fsync per result (${RESULTS / 4} results)`,
          run: () => viaOutbox(broker.url, { resultQos: qos }, RESULTS / 4, 1),
        },
      ];
      printComparison(`results/s at QoS ${qos}, median of ${ROUNDS} rounds`, await inRounds(cases), `raw publish QoS ${qos}`, true);
    }
    const rows: Row[] = [{ name: 'raw publish QoS 1', value: (await raw(broker.url, 1, BACKLOG)).rate, unit: 'results/s', note: `${BACKLOG} at once` }];
    for (const inFlight of [100, 1000]) {
      const { rate, enqueueRate } = await drain(broker, { inFlight, outbox: { synchronous: 'full' } });
      rows.push({ name: `drain backlog, window ${inFlight}`, value: rate, unit: 'results/s', note: `queued offline at ${enqueueRate.toFixed(0)}/s, ${BATCH} per transaction (synchronous=full)` });
    }
    printComparison(`drain of a ${BACKLOG}-result backlog after an outage (QoS 1)`, rows, 'raw publish QoS 1', true);
  } finally {
    await broker.stop();
    tmp.cleanup();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
