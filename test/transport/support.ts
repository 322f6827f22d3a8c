import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { createBroker } from 'aedes';
import type { Decision } from '../../src/engine/decision';
import { waitUntil } from '../helpers/mqtt';

/** A plausible decision for frame `frameId` (the transport only serialises it). */
export function decision(frameId: string): Decision {
  return {
    frameId,
    labelIndex: 3,
    label: 'Dress',
    score: 0.91,
    probabilities: [0.01, 0.01, 0.01, 0.91, 0.06],
    expert: 2,
    experts: [2],
    gate: [0.1, 0.2, 0.6, 0.1],
    earlyExit: false,
    baseConfidence: 0.72,
    macs: 123456,
    timingsUs: { trunk: 100, base: 20, gate: 5, expert: 40, total: 170 },
    providers: { trunk: 'cpu', base: 'cpu', gate: 'cpu', expert: 'cpu' },
    model: { name: 'fashion-sgmoe', version: '1.0.0' },
  };
}

/**
 * test/transport/fixtures/node-process.ts in its own process, so a test can SIGKILL a real node.
 * `node --import tsx` rather than the tsx CLI: the CLI forks a second process that a kill would miss.
 */
export class NodeProcess {
  readonly output: string[] = [];
  private readonly child: ChildProcess;

  constructor(env: { config: object; db: string; count: number }) {
    this.child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'fixtures/node-process.ts')], {
      env: { ...process.env, SGMOE_TEST_CONFIG: JSON.stringify(env.config), SGMOE_TEST_DB: env.db, SGMOE_TEST_COUNT: String(env.count) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (d) => this.output.push(...String(d).split('\n').filter(Boolean)));
    this.child.stderr?.on('data', (d) => this.output.push(String(d)));
  }

  waitFor(line: string, timeoutMs = 30_000): Promise<void> {
    return waitUntil(() => this.output.includes(line) || this.child.exitCode !== null, timeoutMs, `"${line}" from the node process`).then(() => {
      if (!this.output.includes(line)) throw new Error(`node process exited: ${this.output.join('\n')}`);
    });
  }

  /** SIGKILL: no clean shutdown, no DISCONNECT; the broker must publish the last will. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}

/**
 * An aedes broker on 127.0.0.1:`port` that records the frame id of every result a client publishes to it, whether or
 * not anyone subscribes: what the device sent, duplicates included. `stop()` drops every connection.
 */
export async function countingBroker(port: number, received: string[]): Promise<{ stop(): Promise<void> }> {
  const aedes = createBroker();
  aedes.on('publish', (packet, client) => {
    if (client && packet.topic.endsWith('/result')) received.push(JSON.parse(packet.payload.toString()).frameId);
  });
  const server = createServer(aedes.handle);
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    stop: async () => {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of sockets) socket.destroy();
      await closed;
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}
