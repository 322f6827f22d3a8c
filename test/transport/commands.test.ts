import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { SgmoeError } from '../../src/errors';
import { EmbeddedBroker } from '../../src/transport/broker';
import { MqttTransport } from '../../src/transport/client';
import type { UpdateRequest } from '../../src/protocol/update';
import type { CommandHandlers, CommandOrigin } from '../../src/transport/commands';
import { parseTransportConfig } from '../../src/transport/config';
import { Outbox } from '../../src/transport/outbox';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/mqtt';
import { signCommand } from '../../src/fleet/command-signature';
import { generateSigningKey, readPrivateKey, readPublicKey, TrustedKeys } from '../../src/fleet/keys';
import { CommandAuthoriser } from '../../src/transport/authorise';

/** Commands round-trip over a real (embedded aedes) broker, with an mqtt.js client as the operator. */
const tmp = tempDir('sgmoe-cmd-');
let broker: EmbeddedBroker;
let outbox: Outbox;
let operator: MqttClient;
const replies: [string, any][] = [];
let threshold = 0.9;
/** Who asked for the last set-threshold, as the handler was told. */
let thresholdOrigin: CommandOrigin | null = null;
/** A well-formed update request (the fleet agent, not the transport, judges the package). */
const UPDATE = { url: 'http://repo/pkg.tar', sha256: 'a'.repeat(64), version: '1.1.0' };
const handlers: CommandHandlers = {
  ping: () => ({ pong: true }),
  getConfig: () => ({ threshold, model: 'fashion-sgmoe@1.0.0' }),
  setThreshold: (t, origin) => {
    thresholdOrigin = origin;
    const previous = threshold;
    threshold = t;
    return { threshold: t, previous };
  },
};

let operatorKey: KeyObject;
let trusted: TrustedKeys;

async function startNode(h: CommandHandlers, device: string): Promise<MqttTransport> {
  const config = parseTransportConfig({ url: broker.url, site: 'plant', device, commands: { maxPayloadBytes: 2048 } });
  const authoriser = new CommandAuthoriser({ keys: trusted, site: 'plant', device, windowMs: 60_000 });
  const transport = new MqttTransport({ config, outbox, commands: h, authoriser });
  await transport.start();
  expect(transport.stats().state).toBe('online');
  return transport;
}

let node: MqttTransport;
let prefix: string;

beforeAll(async () => {
  broker = new EmbeddedBroker();
  await broker.start();
  await generateSigningKey(join(tmp.path, 'operator'));
  operatorKey = await readPrivateKey(join(tmp.path, 'operator.key'));
  trusted = new TrustedKeys([await readPublicKey(join(tmp.path, 'operator.pub'))]);
  outbox = Outbox.open(join(tmp.path, 'outbox.db'), { maxResults: 100 });
  node = await startNode(handlers, 'cam-1');
  prefix = node.topics.prefix;
  operator = await mqtt.connectAsync(broker.url);
  operator.on('message', (topic, payload) => replies.push([topic, JSON.parse(payload.toString())]));
  await operator.subscribeAsync('sgmoe/v1/plant/+/cmd/+/reply', { qos: 1 });
});

afterAll(async () => {
  await operator.endAsync();
  await node.stop();
  outbox.close();
  await broker.stop();
  tmp.cleanup();
});

let seq = 0;
/** Sends a raw payload to cmd/{name} and waits for the reply on cmd/{name}/reply. */
async function send(name: string, payload: string | Buffer, device = 'cam-1'): Promise<any> {
  const before = replies.length;
  const topic = `sgmoe/v1/plant/${device}/cmd/${name}`;
  // Retry until the node's cmd/# subscription is in place (it is made right after CONNACK).
  const deadline = Date.now() + 5000;
  while (replies.length === before) {
    if (Date.now() > deadline) throw new Error(`no reply to ${name}`);
    await operator.publishAsync(topic, payload, { qos: 1 });
    await waitUntil(() => replies.length > before, 1000, `a reply to ${name}`).catch(() => undefined);
  }
  const [replyTopic, reply] = replies[before];
  expect(replyTopic).toBe(`${topic}/reply`);
  return reply;
}
const request = (args?: unknown) => JSON.stringify({ id: `req-${++seq}`, ...(args === undefined ? {} : { args }) });
/** A command that changes the device, in an envelope signed by the operator for `device`. */
const signed = (command: string, args: unknown, id = `req-${++seq}`, device = 'cam-1') =>
  JSON.stringify({ id, envelope: signCommand({ command, site: 'plant', device, id, args }, operatorKey) });

describe('commands', () => {
  it('answers ping with the correlation id', async () => {
    const reply = await send('ping', JSON.stringify({ id: 'abc-1' }));
    expect(reply).toMatchObject({ schema: 'sgmoe.reply/1', id: 'abc-1', command: 'ping', ok: true, data: { pong: true } });
  });

  it('changes the threshold with set-threshold and shows it in get-config', async () => {
    const set = await send('set-threshold', signed('set-threshold', { threshold: 0.75 }, 'st-1'));
    expect(set).toMatchObject({ ok: true, data: { threshold: 0.75, previous: 0.9 } });
    expect(threshold).toBe(0.75);
    // The handler is told who authorised the change, for its audit event.
    expect(thresholdOrigin).toEqual({ id: 'st-1', keyId: trusted.ids[0] });
    const config = await send('get-config', request());
    expect(config).toMatchObject({ ok: true, data: { threshold: 0.75 } });
  });

  it('tells the update and rollback handlers the request id and the key that signed it', async () => {
    const origins: [string, string, CommandOrigin][] = [];
    const fleet = await startNode(
      {
        ...handlers,
        update: (_request, id, origin) => origins.push(['update', id, origin]),
        rollback: (id, origin) => origins.push(['rollback', id, origin]),
      },
      'cam-3',
    );
    try {
      expect(await send('update', signed('update', UPDATE, 'u-7', 'cam-3'), 'cam-3')).toMatchObject({ ok: true });
      expect(await send('rollback', signed('rollback', undefined, 'rb-7', 'cam-3'), 'cam-3')).toMatchObject({ ok: true });
      expect(origins).toEqual([
        ['update', 'u-7', { id: 'u-7', keyId: trusted.ids[0] }],
        ['rollback', 'rb-7', { id: 'rb-7', keyId: trusted.ids[0] }],
      ]);
    } finally {
      await fleet.stop();
    }
  });

  it('replies "not supported" to update when no fleet agent is wired', async () => {
    const reply = await send('update', signed('update', UPDATE, 'u-1'));
    expect(reply).toMatchObject({ id: 'u-1', ok: false, error: { code: 'E_CMD_UNSUPPORTED', message: expect.stringContaining('not supported') } });
  });

  it.each([
    ['malformed JSON', 'ping', '{"id": "x", ', 'E_CMD_JSON', null],
    ['a JSON array', 'ping', '[1,2]', 'E_CMD_INVALID', null],
    ['a missing id', 'ping', '{"args": {}}', 'E_CMD_INVALID', null],
    ['an unknown command', 'reboot', '{"id": "r-1"}', 'E_CMD_UNKNOWN', 'r-1'],
    ['a threshold of the wrong type', 'set-threshold', () => signed('set-threshold', { threshold: 'high' }, 't-1'), 'E_CMD_INVALID', 't-1'],
    ['a threshold out of range', 'set-threshold', () => signed('set-threshold', { threshold: 7 }, 't-2'), 'E_CMD_INVALID', 't-2'],
    ['unexpected args', 'ping', '{"id": "p-9", "args": {"now": true}}', 'E_CMD_INVALID', 'p-9'],
    ['update without a package', 'update', () => signed('update', { version: '1.1.0' }, 'u-2'), 'E_CMD_INVALID', 'u-2'],
    ['an unsigned set-threshold', 'set-threshold', '{"id": "t-3", "args": {"threshold": 0.1}}', 'E_CMD_UNAUTHORISED', 't-3'],
    ['an oversized payload', 'ping', JSON.stringify({ id: 'big', pad: 'x'.repeat(3000) }), 'E_CMD_TOO_LARGE', null],
  ])('answers %s with an error reply', async (_what, name, payload, code, id) => {
    const reply = await send(name, typeof payload === 'function' ? payload() : payload);
    expect(reply).toMatchObject({ schema: 'sgmoe.reply/1', command: name, ok: false, id, error: { code } });
    expect(reply.error.message.length).toBeGreaterThan(10);
  });

  it('keeps serving after bad input, and does not treat its own replies as commands', async () => {
    const spy = await mqtt.connectAsync(broker.url);
    const seen: string[] = [];
    spy.on('message', (topic) => seen.push(topic));
    await spy.subscribeAsync(`${prefix}cmd/#`, { qos: 1 });
    try {
      expect(await send('ping', request())).toMatchObject({ ok: true });
      // The node also receives its reply (it subscribes to cmd/#) and must not answer it. A second ping is the
      // barrier: the node handles its messages in order, so an answer to the first reply would come before it.
      expect(await send('ping', request())).toMatchObject({ ok: true });
      await waitUntil(() => seen.filter((t) => t.endsWith('/reply')).length >= 2, 5000, 'both replies at the spy');
      expect(seen.filter((t) => t.endsWith('/reply'))).toEqual([`${prefix}cmd/ping/reply`, `${prefix}cmd/ping/reply`]);
      expect(seen.some((t) => t.endsWith('/reply/reply'))).toBe(false);
    } finally {
      await spy.endAsync();
    }
  });

  it('passes a handler failure on with its code', async () => {
    const failing = await startNode(
      {
        ...handlers,
        setThreshold: () => {
          throw new SgmoeError('E_ENGINE_STATE', 'no engine loaded yet');
        },
        update: (request: UpdateRequest, id: string) => {
          throw new Error(`disk full while staging ${request.url} for ${id}`);
        },
      },
      'cam-2',
    );
    try {
      expect(await send('set-threshold', signed('set-threshold', { threshold: 0.5 }, 's-3', 'cam-2'), 'cam-2')).toMatchObject({ ok: false, error: { code: 'E_ENGINE_STATE' } });
      expect(await send('update', signed('update', UPDATE, 'u-3', 'cam-2'), 'cam-2')).toMatchObject({
        ok: false,
        error: { code: 'E_CMD_FAILED', message: 'disk full while staging http://repo/pkg.tar for u-3' },
      });
    } finally {
      await failing.stop();
    }
  });
});
