import { SgmoeError } from '../../src/errors';
import { parseTransportConfig } from '../../src/transport/config';
import { topicsFor } from '../../src/protocol/topics';
import { RESULT_SCHEMA, resultPayload, resultPayloadSchema, rejectedPayload, rejectedPayloadSchema } from '../../src/protocol/payloads';
import { decision } from './support';

function configError(input: unknown): SgmoeError {
  try {
    parseTransportConfig(input);
  } catch (err) {
    return err as SgmoeError;
  }
  throw new Error('expected parseTransportConfig to reject');
}

describe('transport config', () => {
  it('fills in the documented defaults', () => {
    const config = parseTransportConfig({ site: 'plant-a', device: 'cam-7' });
    expect(config).toMatchObject({
      url: 'mqtt://127.0.0.1:1883',
      protocolVersion: 4,
      keepalive: 30,
      resultQos: 1,
      topicPrefix: 'sgmoe/v1/{site}/{device}/',
      reconnect: { minMs: 500, maxMs: 30000 },
      outbox: { maxResults: 100000, synchronous: 'full' },
      commands: { maxPayloadBytes: 65536 },
    });
    expect(config.embeddedBroker).toBeUndefined();
  });

  it('defaults the device to a topic-safe host name', () => {
    expect(parseTransportConfig({}).device).toMatch(/^[^/+#\s]+$/);
  });

  it.each([
    [{ url: 'http://broker:1883' }, 'url'],
    [{ device: 'cam/7' }, 'device'],
    [{ site: 'a+b' }, 'site'],
    [{ protocolVersion: 3 }, 'protocolVersion'],
    [{ reconnect: { minMs: 5000, maxMs: 100 } }, 'reconnect'],
    [{ topicPrefix: 'sgmoe/#/' }, 'topicPrefix'],
    [{ tls: { cert: '/c.pem' } }, 'tls'],
    [{ keepalive: 'soon' }, 'keepalive'],
    [{ brokerUrl: 'mqtt://x' }, 'brokerUrl'],
  ])('rejects %j with E_CONFIG_INVALID naming %s', (input, field) => {
    const err = configError(input);
    expect(err).toBeInstanceOf(SgmoeError);
    expect(err.code).toBe('E_CONFIG_INVALID');
    expect(err.message).toContain(field);
  });
});

describe('topics', () => {
  const topics = topicsFor({ topicPrefix: 'sgmoe/v1/{site}/{device}/', site: 'plant-a', device: 'cam-7' });

  it('substitutes site and device into the prefix', () => {
    expect(topics.result).toBe('sgmoe/v1/plant-a/cam-7/result');
    expect(topics.status).toBe('sgmoe/v1/plant-a/cam-7/status');
    expect(topics.health).toBe('sgmoe/v1/plant-a/cam-7/health');
    expect(topics.rejected).toBe('sgmoe/v1/plant-a/cam-7/rejected');
    expect(topics.commands).toBe('sgmoe/v1/plant-a/cam-7/cmd/#');
    expect(topics.reply('ping')).toBe('sgmoe/v1/plant-a/cam-7/cmd/ping/reply');
  });

  it('recognises commands but not our own replies or other devices', () => {
    expect(topics.commandName('sgmoe/v1/plant-a/cam-7/cmd/set-threshold')).toBe('set-threshold');
    expect(topics.commandName('sgmoe/v1/plant-a/cam-7/cmd/ping/reply')).toBeNull();
    expect(topics.commandName('sgmoe/v1/plant-a/cam-8/cmd/ping')).toBeNull();
    expect(topics.commandName('sgmoe/v1/plant-a/cam-7/cmd/')).toBeNull();
  });

  it('honours a custom prefix', () => {
    expect(topicsFor({ topicPrefix: 'factory/{device}/', site: 's', device: 'd' }).result).toBe('factory/d/result');
  });
});

describe('result payload', () => {
  it('carries exactly the documented result fields plus the schema version', () => {
    const payload = resultPayload(decision('frame-1'), { source: 'dir:/in', ts: new Date('2025-01-02T03:04:05.006Z') });
    expect(Object.keys(payload).sort()).toEqual(
      ['baseConfidence', 'earlyExit', 'expert', 'frameId', 'gate', 'label', 'macs', 'model', 'schema', 'score', 'source', 'timingsUs', 'ts'].sort(),
    );
    expect(payload).toMatchObject({
      schema: RESULT_SCHEMA,
      frameId: 'frame-1',
      ts: '2025-01-02T03:04:05.006Z',
      source: 'dir:/in',
      model: { name: 'fashion-sgmoe', version: '1.0.0' },
      label: 'Dress',
      expert: 2,
      earlyExit: false,
    });
    expect(resultPayloadSchema.safeParse(JSON.parse(JSON.stringify(payload))).success).toBe(true);
  });

  it('a rejection names the frame, the code and the reason, and validates', () => {
    const payload = rejectedPayload('frame-3', { code: 'E_FRAME_DECODE', message: 'not a PNG' }, { name: 'fashion-sgmoe', version: '1.0.0' }, { source: 'dir:/in', ts: new Date('2025-01-02T03:04:05.006Z') });
    expect(payload).toEqual({ schema: 'sgmoe.rejected/1', frameId: 'frame-3', ts: '2025-01-02T03:04:05.006Z', source: 'dir:/in', model: { name: 'fashion-sgmoe', version: '1.0.0' }, code: 'E_FRAME_DECODE', message: 'not a PNG' });
    expect(rejectedPayloadSchema.safeParse(JSON.parse(JSON.stringify(payload))).success).toBe(true);
  });

  it('keeps a null expert for early exits', () => {
    const early = { ...decision('frame-2'), expert: null, experts: [], earlyExit: true };
    const payload = resultPayload(early, { source: 's', ts: new Date() });
    expect(payload.expert).toBeNull();
    expect(resultPayloadSchema.parse(payload).earlyExit).toBe(true);
  });
});
