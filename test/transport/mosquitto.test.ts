import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { MqttTransport } from '../../src/transport/client';
import { parseTransportConfig, type TransportConfigInput } from '../../src/transport/config';
import { Outbox } from '../../src/transport/outbox';
import { tempDir } from '../helpers/tmp';
import { Mosquitto, MosquittoSub, waitUntil } from '../helpers/mqtt';
import { NodeProcess, decision } from './support';

/** Debian's mosquitto, started and killed by the tests, with mosquitto_sub as the independent reader. */
const tmp = tempDir('sgmoe-mosq-');
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => tmp.cleanup());

let n = 0;
function folder(): string {
  const dir = join(tmp.path, `case-${++n}`);
  execFileSync('mkdir', ['-p', dir]);
  return dir;
}

async function mosquitto(dir: string, extra: string[] = []): Promise<Mosquitto> {
  const broker = await Mosquitto.create(dir, extra);
  await broker.start();
  cleanups.push(() => broker.stop());
  return broker;
}

function sub(port: number, topic: string, args: string[] = []): MosquittoSub {
  const s = new MosquittoSub(port, topic, args);
  cleanups.push(() => s.stop());
  return s;
}

function node(url: string, db: string, extra: TransportConfigInput = {}) {
  const config = parseTransportConfig({ url, site: 'plant', device: 'line-1', reconnect: { minMs: 50, maxMs: 500 }, ...extra });
  const outbox = Outbox.open(db, { maxResults: config.outbox.maxResults, synchronous: config.outbox.synchronous });
  const transport = new MqttTransport({ config, outbox });
  cleanups.push(() => outbox.close(), () => transport.stop());
  return { transport, outbox };
}

const PREFIX = 'sgmoe/v1/plant/line-1/';
const frameIds = (s: MosquittoSub) =>
  s.messages().filter(([t, p]) => t === `${PREFIX}result` && p.frameId !== undefined).map(([, p]) => p.frameId as string);
/** The reader is subscribed once it sees a probe (a message without a frame id, which `frameIds` skips). */
const readerSubscribed = (port: number, reader: MosquittoSub) =>
  waitUntil(() => {
    execFileSync('mosquitto_pub', ['-p', String(port), '-q', '1', '-t', `${PREFIX}result`, '-m', '{"probe":true}']);
    return reader.lines.length > 0;
  }, 5000, 'the reader to subscribe');
const statuses = (s: MosquittoSub) => s.messages().filter(([t]) => t === `${PREFIX}status`).map(([, p]) => `${p.state}/${p.reason}`);

describe('MqttTransport against mosquitto', () => {
  it('shows birth, results, a clean offline and a last will to mosquitto_sub', async () => {
    const dir = folder();
    const broker = await mosquitto(dir);
    const reader = sub(broker.port, `${PREFIX}#`, ['-q', '1']);
    const { transport } = node(broker.url, join(dir, 'outbox.db'));
    await transport.start();
    await waitUntil(() => statuses(reader).length === 1, 5000, 'the birth');
    for (let i = 0; i < 100; i++) transport.publishResult(decision(`r-${i}`), { source: 'dir:/in', ts: new Date() });
    await waitUntil(() => frameIds(reader).length === 100, 10000, '100 results');
    expect(frameIds(reader)).toEqual(Array.from({ length: 100 }, (_, i) => `r-${i}`));
    await transport.stop();
    await waitUntil(() => statuses(reader).length === 2, 5000, 'the offline status');

    // The same device as a process that dies: mosquitto publishes the will.
    const crashing = new NodeProcess({ config: { url: broker.url, site: 'plant', device: 'line-1' }, db: join(dir, 'crash.db'), count: 0 });
    cleanups.push(() => crashing.kill());
    await crashing.waitFor('started online');
    await waitUntil(() => statuses(reader).length === 3, 5000, 'the second birth');
    await crashing.kill();
    await waitUntil(() => statuses(reader).length === 4, 5000, 'the last will');
    expect(statuses(reader)).toEqual(['online/connected', 'offline/shutdown', 'online/connected', 'offline/lost']);
  });

  it('delivers every one of 10,000 results while the broker is killed and restarted (duplicates counted, none lost)', async () => {
    const dir = folder();
    const broker = await mosquitto(dir);
    // A persistent session (fixed id, clean=false, QoS 1) so the reader misses nothing while the broker restarts.
    const reader = sub(broker.port, `${PREFIX}result`, ['-q', '1', '-c', '-i', 'plant-reader']);
    // synchronous=normal: this test is about a broker restart, not power loss; it keeps 10,000 enqueues quick.
    const { transport, outbox } = node(broker.url, join(dir, 'outbox.db'), { outbox: { synchronous: 'normal' } });
    await transport.start();
    await readerSubscribed(broker.port, reader);
    const total = 10_000;
    let published = 0;
    const publishSome = (count: number) => {
      for (const end = Math.min(total, published + count); published < end; published++) {
        transport.publishResult(decision(`k-${published}`), { source: 'cam', ts: new Date() });
      }
    };

    // Publish in slices while the broker goes away and comes back.
    let restarted = false;
    while (published < total) {
      publishSome(200);
      await new Promise((r) => setImmediate(r));
      if (!restarted && outbox.stats().sent >= 3000) {
        restarted = true;
        await broker.stop('SIGTERM');
        publishSome(1000); // queued while the broker is down
        await waitUntil(() => transport.stats().state === 'connecting', 5000, 'the transport to notice the broker is gone');
        await broker.start();
      }
    }
    expect(restarted).toBe(true);
    await waitUntil(() => outbox.stats().pending === 0, 60000, 'the outbox to drain');
    await waitUntil(() => new Set(frameIds(reader)).size === total, 30000, `all ${total} frame ids at the reader`);

    const ids = frameIds(reader);
    const unique = new Set(ids);
    const duplicates = ids.length - unique.size;
    console.log(`kill-the-broker: ${ids.length} messages received, ${unique.size} unique, ${duplicates} duplicates, ${transport.stats().connects} connects`);
    for (let i = 0; i < total; i++) expect(unique.has(`k-${i}`)).toBe(true);
    // In order: the first time each id appears, ids only go up.
    const firsts = [...unique].map((id) => Number(id.slice(2)));
    expect(firsts).toEqual([...firsts].sort((a, b) => a - b));
    expect(outbox.stats()).toMatchObject({ pending: 0, queued: total, dropped: 0 });
    expect(transport.stats().connects).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('delivers, in order, what a stopped or crashed node left in its outbox when it starts again', async () => {
    const dir = folder();
    const broker = await Mosquitto.create(dir);
    cleanups.push(() => broker.stop());
    const db = join(dir, 'outbox.db');

    // 1) Broker down: a node queues 300 results and is stopped cleanly.
    const first = node(broker.url, db);
    await first.transport.start();
    for (let i = 0; i < 300; i++) first.transport.publishResult(decision(`s-${i}`), { source: 'cam', ts: new Date() });
    await first.transport.stop();
    first.outbox.close();

    // 2) Still down: a node process queues 200 more and is SIGKILLed.
    const crashing = new NodeProcess({ config: { url: broker.url, site: 'plant', device: 'line-1' }, db, count: 200 });
    cleanups.push(() => crashing.kill());
    await crashing.waitFor('queued 200');
    await crashing.kill();

    // 3) Broker up, a new node on the same outbox file: all 500, in order, exactly once.
    await broker.start();
    const reader = sub(broker.port, `${PREFIX}result`, ['-q', '1']);
    await readerSubscribed(broker.port, reader);
    const second = node(broker.url, db);
    expect(second.outbox.stats()).toMatchObject({ pending: 500, queued: 500, sent: 0 });
    await second.transport.start();
    await waitUntil(() => frameIds(reader).length === 500, 15000, '500 results');
    expect(frameIds(reader)).toEqual([...Array.from({ length: 300 }, (_, i) => `s-${i}`), ...Array.from({ length: 200 }, (_, i) => `p-${i}`)]);
    await waitUntil(() => second.outbox.stats().pending === 0, 5000, 'the outbox to empty');
    expect(second.outbox.stats()).toEqual({ pending: 0, queued: 500, sent: 500, dropped: 0 });
  });

  it.each([4, 5] as const)('names refused credentials (MQTT protocol %i) with E_MQTT_AUTH', async (protocolVersion) => {
    const dir = folder();
    const passwords = join(dir, 'passwd');
    execFileSync('mosquitto_passwd', ['-c', '-b', passwords, 'edge', 'secret']);
    const broker = await mosquitto(dir, [`password_file ${passwords}`, 'allow_anonymous false']);
    const wrong = node(broker.url, join(dir, 'a.db'), { username: 'edge', password: 'wrong', protocolVersion });
    await expect(wrong.transport.start()).rejects.toMatchObject({
      code: 'E_MQTT_AUTH',
      message: expect.stringContaining(`broker ${broker.url} refused client "sgmoe-line-1"`),
    });
    const right = node(broker.url, join(dir, 'b.db'), { username: 'edge', password: 'secret', protocolVersion });
    await right.transport.start();
    expect(right.transport.stats().state).toBe('online');
  });

  it('emits refused (E_MQTT_AUTH, CONNACK code 5) when mosquitto starts refusing a running node, and online once it accepts it again', async () => {
    const dir = folder();
    const passwords = join(dir, 'passwd');
    const password = (p: string) => execFileSync('mosquitto_passwd', ['-c', '-b', passwords, 'edge', p]);
    password('secret');
    const broker = await mosquitto(dir, [`password_file ${passwords}`, 'allow_anonymous false']);
    const { transport, outbox } = node(broker.url, join(dir, 'a.db'), { username: 'edge', password: 'secret' });
    const events: string[] = [];
    transport.on('refused', (error) => events.push(`refused ${error.code} ${/CONNACK code \d+/.exec(error.message)?.[0]}`));
    transport.on('online', () => events.push('online'));
    await transport.start();
    expect(events).toEqual(['online']); // every accepted connection; at start a refusal rejects start() instead

    // The device's password is changed on the broker, which restarts.
    await broker.stop();
    password('changed');
    await broker.start();
    await waitUntil(() => events.length > 1, 10_000, 'the refusal');
    expect(events[1]).toBe('refused E_MQTT_AUTH CONNACK code 5');
    for (let i = 0; i < 10; i++) transport.publishResult(decision(`r-${i}`), { source: 's', ts: new Date() });

    await broker.stop();
    password('secret');
    await broker.start();
    await waitUntil(() => events.at(-1) === 'online', 10_000, 'the accepted connection');
    // One refusal per attempt while it lasted (the node raises its fault once).
    expect(new Set(events.slice(1, -1))).toEqual(new Set(['refused E_MQTT_AUTH CONNACK code 5']));
    expect(events.at(-1)).toBe('online');
    await waitUntil(() => outbox.stats().pending === 0, 10_000, 'the queued results sent');
  });

  it('names a TLS failure with E_MQTT_TLS, and connects over mqtts:// with the right CA and server name', async () => {
    const dir = folder();
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=broker.test', '-keyout', 'server.key', '-out', 'server.csr');
    ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'server.pem');
    const broker = await Mosquitto.create(dir, [`cafile ${dir}/ca.pem`, `certfile ${dir}/server.pem`, `keyfile ${dir}/server.key`]);
    await broker.start();
    cleanups.push(() => broker.stop());
    const url = `mqtts://127.0.0.1:${broker.port}`;

    const untrusted = node(url, join(dir, 'a.db'));
    await expect(untrusted.transport.start()).rejects.toMatchObject({ code: 'E_MQTT_TLS', message: expect.stringMatching(/TLS with mqtts:.*failed: .*certificate/) });

    const wrongName = node(url, join(dir, 'b.db'), { tls: { ca: join(dir, 'ca.pem'), servername: 'other.test' } });
    await expect(wrongName.transport.start()).rejects.toMatchObject({ code: 'E_MQTT_TLS', message: expect.stringContaining('other.test') });

    const trusted = node(url, join(dir, 'c.db'), { tls: { ca: join(dir, 'ca.pem'), servername: 'broker.test' } });
    await trusted.transport.start();
    expect(trusted.transport.stats().state).toBe('online');
  });
});
