import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net';

export async function waitUntil(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Debian's mosquitto on 127.0.0.1 on a free port, started (and restarted, same port and persistence
 * folder) by the test; `extra` lines go into its config file.
 */
export class Mosquitto {
  private child: ChildProcess | null = null;
  readonly log: string[] = [];

  private constructor(readonly port: number, private readonly confPath: string) {}

  static async create(dir: string, extra: string[] = []): Promise<Mosquitto> {
    const port = await freePort();
    const confPath = join(dir, `mosquitto-${port}.conf`);
    // `user`: started as root, mosquitto would drop to user "mosquitto", which cannot read our private temp folder.
    const conf = [`listener ${port} 127.0.0.1`, `user ${userInfo().username}`, 'persistence true', `persistence_location ${dir}/`, 'max_queued_messages 0', ...extra];
    if (!extra.some((l) => l.startsWith('allow_anonymous') || l.startsWith('password_file'))) conf.push('allow_anonymous true');
    writeFileSync(confPath, conf.join('\n') + '\n');
    return new Mosquitto(port, confPath);
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn('mosquitto', ['-c', this.confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d) => this.log.push(String(d)));
    child.stderr?.on('data', (d) => this.log.push(String(d)));
    this.child = child;
    const deadline = Date.now() + 5000;
    while (!(await portOpen(this.port))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`mosquitto did not start:\n${this.log.join('')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGTERM: mosquitto writes its persistence file (sessions, queued and retained messages) and exits. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }
}

/** `mosquitto_sub -v`: an independent client that prints "topic payload" per message. */
export class MosquittoSub {
  readonly lines: string[] = [];
  private readonly child: ChildProcess;
  private buffer = '';

  constructor(port: number, topic: string, extraArgs: string[] = []) {
    this.child = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-v', '-t', topic, ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.buffer += d.toString('utf8');
      const parts = this.buffer.split('\n');
      this.buffer = parts.pop() ?? '';
      this.lines.push(...parts);
    });
  }

  /** Messages as [topic, parsed JSON payload]. */
  messages(): [string, any][] {
    return this.lines.map((line) => {
      const space = line.indexOf(' ');
      return [line.slice(0, space), JSON.parse(line.slice(space + 1))];
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}
