import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createBroker, type Client } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { EmbeddedBroker } from '../../src/transport/broker';
import { MqttTransport } from '../../src/transport/client';
import type { CommandHandlers } from '../../src/transport/commands';
import { clientIdOf, parseTransportConfig, type TransportConfigInput } from '../../src/transport/config';
import { statusPayloadSchema } from '../../src/protocol/payloads';
import { Outbox } from '../../src/transport/outbox';
import { freePort } from '../helpers/net';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/mqtt';
import { NodeProcess, decision } from './support';

/** Embedded aedes broker (in-process) and an mqtt.js client as the plant's side. */
const tmp = tempDir('sgmoe-aedes-');
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => tmp.cleanup());

let n = 0;
function transportOn(url: string, extra: TransportConfigInput = {}, commands?: CommandHandlers) {
  const config = parseTransportConfig({ url, site: 'plant', device: `dev${++n}`, reconnect: { minMs: 50, maxMs: 200 }, ...extra });
  const outbox = Outbox.open(join(tmp.path, `outbox-${n}.db`), { maxResults: 1000 });
  const transport = new MqttTransport({ config, outbox, commands });
  cleanups.push(() => outbox.close(), () => transport.stop());
  return { transport, outbox, config };
}

async function broker(options: ConstructorParameters<typeof EmbeddedBroker>[0] = {}): Promise<EmbeddedBroker> {
  const b = new EmbeddedBroker(options);
  await b.start();
  cleanups.push(() => b.stop());
  return b;
}

/** A bare aedes on 127.0.0.1 that can drop a client's connection, as a broker loses a node whose link died. */
async function droppingBroker(): Promise<{ url: string; drop(clientId: string): void }> {
  const aedes = createBroker();
  const clients = new Map<string, Client>();
  aedes.on('client', (client) => clients.set(client.id, client));
  const server = createServer(aedes.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    const closed = new Promise((resolve) => server.close(resolve));
    for (const client of clients.values()) client.conn.destroy();
    await closed;
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  });
  return { url: `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`, drop: (clientId) => clients.get(clientId)?.conn.destroy() };
}

/** A plant-side client that records every message on `filter`. */
async function listener(url: string, filter: string): Promise<{ client: MqttClient; got: [string, any][] }> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 100 });
  const got: [string, any][] = [];
  client.on('message', (topic, payload) => got.push([topic, JSON.parse(payload.toString())]));
  await client.subscribeAsync(filter, { qos: 1 });
  cleanups.push(() => client.endAsync());
  return { client, got };
}

describe('MqttTransport against the embedded aedes broker', () => {
  it('starts on a fresh outbox when the file is not a database, and tells the plant with an E_OUTBOX_RECOVERED alarm', async () => {
    const b = await broker();
    const path = join(tmp.path, 'garbage-outbox.db');
    writeFileSync(path, 'not a database, '.repeat(512));
    const outbox = Outbox.open(path, { maxResults: 1000 });
    const transport = new MqttTransport({ config: parseTransportConfig({ url: b.url, site: 'plant', device: 'recovered' }), outbox });
    cleanups.push(() => outbox.close(), () => transport.stop());
    const { got } = await listener(b.url, transport.topics.alarm);
    await transport.start();
    await waitUntil(() => got.length > 0, 5000, 'the alarm');
    expect(got[0][1]).toMatchObject({ severity: 'warning', code: 'E_OUTBOX_RECOVERED', message: expect.stringContaining('an unknown number of queued result(s) may be lost') });
    expect(transport.stats().outboxRecovered).toMatchObject({ code: 'SQLITE_NOTADB', resultsMayBeLost: null, movedTo: expect.stringContaining('.corrupt-') });
    transport.publishResult(decision('after'), { source: 'dir:/in', ts: new Date() });
    await waitUntil(() => outbox.stats().sent === 2, 5000, 'the alarm and a result sent');
  });

  it('publishes results in order after a retained birth, and an offline status on a clean stop', async () => {
    const b = await broker();
    const { transport, outbox } = transportOn(b.url);
    await transport.start();
    const { got } = await listener(b.url, `${transport.topics.prefix}#`);
    await waitUntil(() => got.some(([t]) => t === transport.topics.status), 5000, 'the retained birth');
    expect(got[0][1]).toMatchObject({ schema: 'sgmoe.status/1', state: 'online', reason: 'connected', device: transport.topics.prefix.split('/')[3] });

    for (let i = 0; i < 300; i++) transport.publishResult(decision(`f-${i}`), { source: 'dir:/in', ts: new Date() });
    const results = () => got.filter(([t]) => t === transport.topics.result).map(([, p]) => p.frameId);
    await waitUntil(() => results().length === 300, 10000, '300 results');
    expect(results()).toEqual(Array.from({ length: 300 }, (_, i) => `f-${i}`));
    await waitUntil(() => outbox.stats().pending === 0, 5000, 'an empty outbox');
    expect(outbox.stats()).toEqual({ pending: 0, queued: 300, sent: 300, dropped: 0 });

    await transport.stop();
    await waitUntil(() => got.filter(([t]) => t === transport.topics.status).length === 2, 5000, 'the offline status');
    expect(got.at(-1)).toEqual([transport.topics.status, expect.objectContaining({ state: 'offline', reason: 'shutdown' })]);
    // Retained: someone who looks later sees the device offline.
    const late = await listener(b.url, transport.topics.status);
    await waitUntil(() => late.got.length === 1, 5000, 'the retained status');
    expect(late.got[0][1]).toMatchObject({ state: 'offline', reason: 'shutdown' });
  });

  it('keeps at most inFlight messages awaiting their PUBACK, publishing a row larger than the window a message at a time, in order, and health and alarms after them', async () => {
    const b = await broker();
    const { transport, outbox } = transportOn(b.url, { inFlight: 5 });
    await transport.start();
    const { client, got } = await listener(b.url, transport.topics.result);
    let most = 0;
    const sample = (): void => void (most = Math.max(most, transport.stats().inFlight));
    client.on('message', sample);
    const frame = { source: 'dir:/in', ts: new Date() };
    for (let batch = 0; batch < 10; batch++) {
      // One engine batch is one outbox row of 16 messages: three times the window.
      transport.publishResults(Array.from({ length: 16 }, (_, i) => ({ decision: decision(`f-${batch * 16 + i}`), frame })));
      sample();
    }
    await waitUntil(() => got.length === 160, 10000, '160 results');
    expect(got.map(([, p]) => p.frameId)).toEqual(Array.from({ length: 160 }, (_, i) => `f-${i}`));
    expect(most).toBe(5);
    await waitUntil(() => outbox.stats().pending === 0, 5000, 'an empty outbox');

    // Health and alarms stored after everything went out are sent as well.
    const { got: others } = await listener(b.url, `${transport.topics.prefix}#`);
    transport.publishHealth({ counters: { decided: 160 } });
    transport.publishAlarm({ severity: 'warning', code: 'E_TEST', message: 'after the results' });
    await waitUntil(() => others.some(([t]) => t === transport.topics.alarm) && others.some(([t]) => t === transport.topics.health), 5000, 'health and alarm');
  });

  it('starts anyway when the broker is unreachable, queues, and delivers everything in order once it appears', async () => {
    const port = await freePort();
    const { transport, outbox } = transportOn(`mqtt://127.0.0.1:${port}`);
    await transport.start();
    expect(transport.stats()).toMatchObject({ state: 'connecting', lastError: { code: 'E_MQTT_UNREACHABLE' } });
    for (let i = 0; i < 50; i++) transport.publishResult(decision(`q-${i}`), { source: 's', ts: new Date() });
    transport.publishAlarm({ severity: 'critical', code: 'E_TEST_ALARM', message: 'queued while away' });
    expect(outbox.stats()).toMatchObject({ pending: 51, sent: 0 });

    const b = await broker({ port });
    const { got } = await listener(b.url, `${transport.topics.prefix}+`);
    await waitUntil(() => outbox.stats().pending === 0, 15000, 'the backlog to drain');
    await waitUntil(() => got.filter(([t]) => t !== transport.topics.status).length === 51, 5000, 'all 51 messages');
    const delivered = got.filter(([t]) => t !== transport.topics.status).map(([, p]) => p.frameId ?? p.code);
    expect(delivered).toEqual([...Array.from({ length: 50 }, (_, i) => `q-${i}`), 'E_TEST_ALARM']);
    expect(transport.stats()).toMatchObject({ state: 'online', connects: 1, lastError: null });
  });

  it('fails only the rows in flight when the broker goes away, one warning each, and sends the whole backlog once it is back', async () => {
    const port = await freePort();
    const first = await broker({ port });
    const warnings: { msg: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line) as { msg: string }) });
    const config = parseTransportConfig({ url: first.url, site: 'plant', device: `dev${++n}`, reconnect: { minMs: 50, maxMs: 200 } });
    const outbox = Outbox.open(join(tmp.path, `outbox-${n}.db`), { maxResults: 10000 });
    const transport = new MqttTransport({ config, outbox, logger });
    cleanups.push(() => outbox.close(), () => transport.stop());
    await transport.start();
    const frame = { source: 'dir:/in', ts: new Date() };
    // 100 rows of 16: the first window (100 messages, 7 rows) goes out at once, the rest waits in the outbox.
    for (let row = 0; row < 100; row++) {
      transport.publishResults(Array.from({ length: 16 }, (_, i) => ({ decision: decision(`f-${row * 16 + i}`), frame })));
    }
    await first.stop();
    await waitUntil(() => transport.stats().state === 'connecting', 5000, 'the lost connection');
    const failed = warnings.filter((w) => w.msg === 'publish failed');
    expect(failed.length).toBeLessThanOrEqual(Math.ceil(config.inFlight / 16));

    const again = await broker({ port });
    const { got } = await listener(again.url, transport.topics.result);
    await waitUntil(() => outbox.stats().pending === 0, 15000, 'the backlog to drain');
    await waitUntil(() => new Set(got.map(([, p]) => p.frameId)).size === 1600, 5000, 'all 1,600 results');
  });

  it('rejects start() with E_MQTT_AUTH when the broker refuses the credentials, and connects with the right ones', async () => {
    const b = await broker({ authenticate: (u, p) => u === 'edge' && p === 'secret' });
    const wrong = transportOn(b.url, { username: 'edge', password: 'guess' }).transport;
    await expect(wrong.start()).rejects.toMatchObject({ code: 'E_MQTT_AUTH', message: expect.stringMatching(/refused.*CONNACK code 4/) });
    expect(wrong.stats().state).toBe('stopped');

    const right = transportOn(b.url, { username: 'edge', password: 'secret' }).transport;
    await right.start();
    expect(right.stats().state).toBe('online');
  });

  it('lets the broker publish the last will when the node process dies', async () => {
    const b = await broker();
    const device = 'crashy';
    const config = { url: b.url, site: 'plant', device };
    const { got } = await listener(b.url, `sgmoe/v1/plant/${device}/status`);
    const node = new NodeProcess({ config, db: join(tmp.path, 'crashy.db'), count: 0 });
    cleanups.push(() => node.kill());
    await node.waitFor('started online');
    await waitUntil(() => got.length === 1, 5000, 'the birth');
    expect(got[0][1]).toMatchObject({ state: 'online' });
    await node.kill();
    await waitUntil(() => got.length === 2, 5000, 'the last will');
    expect(got[1][1]).toMatchObject({ schema: 'sgmoe.status/1', state: 'offline', reason: 'lost', device });
  });

  it('the retained last will says its time is that of the connect that set it (willSetAt), not of the loss', async () => {
    const b = await droppingBroker();
    // No reconnect within the test: the will stays the retained status.
    const { transport, config } = transportOn(b.url, { reconnect: { minMs: 600_000, maxMs: 600_000 } });
    const { got } = await listener(b.url, transport.topics.status);
    await transport.start();
    b.drop(clientIdOf(config)); // the node's socket dies without a DISCONNECT: the broker publishes its will
    await waitUntil(() => got.some(([, status]) => status.state === 'offline'), 5000, 'the last will');

    const later = await listener(b.url, transport.topics.status);
    await waitUntil(() => later.got.length === 1, 5000, 'the retained status');
    const will = statusPayloadSchema.parse(later.got[0][1]);
    expect(will).toMatchObject({ state: 'offline', reason: 'lost', willSetAt: will.ts });
  });
});
