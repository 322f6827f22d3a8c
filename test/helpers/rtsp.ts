import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from './net';

const SCRIPT = join(__dirname, 'rtsp_server.py');

/**
 * GStreamer's RTSP server (test/helpers/rtsp_server.py) on 127.0.0.1 and a free port, serving /cam: a live test
 * pattern, or an MPEG-TS file once per client. Started, killed and restarted on the same port by the test.
 */
export class RtspServer {
  private child: ChildProcess | null = null;
  readonly log: string[] = [];

  private constructor(
    readonly port: number,
    private readonly source: string,
    private readonly credentials?: { user: string; password: string },
  ) {}

  static async create(source: 'live' | string, credentials?: { user: string; password: string }): Promise<RtspServer> {
    return new RtspServer(await freePort(), source, credentials);
  }

  /** The camera URL, with the given credentials (default: the server's own). */
  url(credentials = this.credentials): string {
    const auth = credentials ? `${credentials.user}:${credentials.password}@` : '';
    return `rtsp://${auth}127.0.0.1:${this.port}/cam`;
  }

  /** Resolves when the server says it listens. */
  start(): Promise<void> {
    const auth = this.credentials ? [this.credentials.user, this.credentials.password] : [];
    const child = spawn('/usr/bin/python3', [SCRIPT, String(this.port), this.source, ...auth], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stderr?.on('data', (d) => this.log.push(String(d)));
    return new Promise((resolve, reject) => {
      child.stdout?.on('data', (d) => {
        this.log.push(String(d));
        if (String(d).includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`RTSP server exited with ${code}:\n${this.log.join('')}`)));
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }
}
