import { createServer, type Server, type Socket } from 'node:net';
import { createBroker, type AuthenticateError } from 'aedes';
import { SgmoeError, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';

export interface EmbeddedBrokerOptions {
  /** 0 = a free port chosen by the OS. */
  port?: number;
  /** Checks CONNECT credentials; absent = anyone on 127.0.0.1 may connect (the demo). */
  authenticate?: (username: string | undefined, password: string | undefined) => boolean;
  logger?: Logger;
}

/**
 * An in-process MQTT 3.1.1 broker (aedes) listening on 127.0.0.1 only: the demo's default, so the
 * quick start needs no broker installed. Its state lives in memory and ends with the process.
 */
export class EmbeddedBroker {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly log: Logger;
  private boundPort = 0;

  constructor(private readonly options: EmbeddedBrokerOptions = {}) {
    this.log = (options.logger ?? silentLogger).child({ module: 'embedded-broker' });
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.boundPort}`;
  }

  async start(): Promise<string> {
    if (this.server) throw new SgmoeError('E_BROKER_STATE', 'start() expects a stopped embedded broker, found one running');
    const { authenticate } = this.options;
    const aedes = createBroker(
      authenticate
        ? {
            authenticate: (_client, username, password, done) => {
              if (authenticate(username, password?.toString('utf8'))) return done(null, true);
              const refused = Object.assign(new Error('bad username or password'), { returnCode: 4 }) as AuthenticateError;
              done(refused, false);
            },
          }
        : {},
    );
    aedes.on('clientError', (client, err) => this.log.debug({ clientId: client.id, err: err.message }, 'client error'));
    const server = createServer(aedes.handle);
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('close', () => aedes.close());
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(new SgmoeError('E_BROKER_LISTEN', `embedded broker could not listen on 127.0.0.1:${this.options.port ?? 0}: ${errorMessage(err)}`, undefined, { cause: err })),
      );
      server.listen(this.options.port ?? 0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.boundPort = (server.address() as { port: number }).port;
    this.log.info({ url: this.url }, 'embedded broker listening');
    return this.url;
  }

  /** Closes the listener and every client connection (their wills are published as for any lost client). */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    this.log.info({ port: this.boundPort }, 'embedded broker stopped');
  }
}
