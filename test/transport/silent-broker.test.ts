import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import type { SgmoeError } from '../../src/errors';
import { MqttTransport } from '../../src/transport/client';
import { parseTransportConfig, type TransportConfigInput } from '../../src/transport/config';
import { Outbox } from '../../src/transport/outbox';
import { waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';

/**
 * Brokers on mqtts:// URLs that take the connection and then say nothing: a silence is retried as any lost broker
 * is, never called a TLS failure (which the node raises as a fault only a configuration change clears).
 */
const tmp = tempDir('sgmoe-silent-');
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => tmp.cleanup());

let n = 0;
function transportOn(url: string, extra: TransportConfigInput): { transport: MqttTransport; refused: SgmoeError[] } {
  const config = parseTransportConfig({ url, site: 'plant', device: `dev${++n}`, ...extra });
  const outbox = Outbox.open(join(tmp.path, `outbox-${n}.db`), { maxResults: 1000 });
  const transport = new MqttTransport({ config, outbox });
  const refused: SgmoeError[] = [];
  transport.on('refused', (error) => refused.push(error));
  cleanups.push(() => outbox.close(), () => transport.stop());
  return { transport, refused };
}

/** Listens on a free port of 127.0.0.1; `sockets` are the connections it took, each dropped at the end. */
async function listening(server: Server): Promise<{ port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  server.on('connection', (socket: Socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    const closed = new Promise((resolve) => server.close(resolve));
    for (const socket of sockets) socket.destroy();
    await closed;
  });
  return { port: (server.address() as { port: number }).port, sockets };
}

describe('a broker that stays silent on an mqtts:// URL', () => {
  it('one that accepts TCP and never answers (no TLS handshake, no CONNACK): start goes on, every attempt is retried, no refusal', async () => {
    const { port, sockets } = await listening(createServer());
    const { transport, refused } = transportOn(`mqtts://127.0.0.1:${port}`, { connectTimeoutMs: 200, reconnect: { minMs: 20, maxMs: 40 } });
    await transport.start();
    expect(transport.stats()).toMatchObject({ state: 'connecting', lastError: { code: 'E_MQTT_CONNECTION', message: expect.stringContaining('connack timeout') } });
    // Two more attempts, the first of them failed after start (where a TLS failure is emitted as a refusal).
    await waitUntil(() => sockets.length >= 3, 10_000, 'two more attempts');
    expect(refused).toEqual([]);
  });

  it('one that completes TLS and the CONNACK, then stops answering (a keepalive timeout once running): no refusal', async () => {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: tmp.path, stdio: 'ignore' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=broker.test', '-keyout', 'broker.key', '-out', 'broker.pem');
    const server = createTlsServer({ key: readFileSync(join(tmp.path, 'broker.key')), cert: readFileSync(join(tmp.path, 'broker.pem')) }, (socket) => {
      // CONNACK (accepted) to the CONNECT, then silence: no PINGRESP ever.
      socket.once('data', () => socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00])));
    });
    const { port } = await listening(server);
    const { transport, refused } = transportOn(`mqtts://127.0.0.1:${port}`, {
      tls: { ca: join(tmp.path, 'broker.pem'), servername: 'broker.test' },
      keepalive: 1,
      reconnect: { minMs: 600_000, maxMs: 600_000 },
    });
    await transport.start();
    expect(transport.stats().state).toBe('online');
    // The error comes a moment before the close that takes the transport off line: both are waited for.
    await waitUntil(() => transport.stats().lastError !== null && transport.stats().state !== 'online', 10_000, 'the keepalive timeout and the close');
    expect(transport.stats()).toMatchObject({ state: 'connecting', lastError: { code: 'E_MQTT_CONNECTION', message: expect.stringContaining('Keepalive timeout') } });
    expect(refused).toEqual([]);
  });
});
