import { createServer, type Server, type Socket } from 'node:net';
import { createBroker, type AedesOptions, type PublishPacket } from 'aedes';

/**
 * An in-process aedes on 127.0.0.1 that can delay what a real network or broker delays: the publishes to one
 * topic (taken from their sender, never acknowledged, and forwarded to the subscribers only on `deliverHeld`),
 * and the connects of one client id (answered only on `admitConnects`).
 */
export class HoldingBroker {
  readonly held: PublishPacket[] = [];
  private heldTopic: string | null = null;
  private heldClient: string | null = null;
  private waitingConnects: Array<() => void> = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly aedes: ReturnType<typeof createBroker>,
    private readonly server: Server,
  ) {}

  static async start(): Promise<HoldingBroker> {
    let broker!: HoldingBroker;
    const authenticate: AedesOptions['authenticate'] = (client, _user, _password, done) => {
      if (client.id !== broker.heldClient) return done(null, true);
      broker.waitingConnects.push(() => done(null, true));
    };
    const aedes = createBroker({
      authenticate,
      // Held: neither acknowledged nor forwarded, as by a broker that stalls with the message in hand.
      authorizePublish: (_client, packet, done) => (packet.topic === broker.heldTopic ? void broker.held.push(packet) : done(null)),
    });
    const server = createServer(aedes.handle);
    broker = new HoldingBroker(aedes, server);
    server.on('connection', (socket) => {
      broker.sockets.add(socket);
      socket.on('close', () => broker.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return broker;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  holdPublishesTo(topic: string | null): void {
    this.heldTopic = topic;
  }

  /** The held publishes reach their subscribers now, late. */
  async deliverHeld(): Promise<void> {
    for (const packet of this.held.splice(0)) await new Promise<void>((resolve, reject) => this.aedes.publish(packet, (err) => (err ? reject(err) : resolve())));
  }

  holdConnectsOf(clientId: string): void {
    this.heldClient = clientId;
  }

  admitConnects(): void {
    this.heldClient = null;
    for (const admit of this.waitingConnects.splice(0)) admit();
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
  }
}
