import { join } from 'node:path';
import pino from 'pino';
import { MqttTransport } from '../../src/transport/client';
import { parseTransportConfig } from '../../src/transport/config';
import { Outbox } from '../../src/transport/outbox';
import { waitUntil } from '../helpers/mqtt';
import { freePort } from '../helpers/net';
import { tmpfsTests } from '../helpers/tmpfs';
import { countingBroker, decision } from './support';

const { disk, onTmpfs } = tmpfsTests('full-disk', 1024 * 1024, 'sgmoe-acks-');

describe('acknowledgements the outbox cannot record (a real 1 MB tmpfs filled up)', () => {
  onTmpfs('are recorded once space returns, without a restart, and the rows the broker has are not sent again meanwhile', async () => {
    if ('unavailable' in disk) return;
    const port = await freePort();
    const logs: { msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as { msg: string }) });
    const outbox = Outbox.open(join(disk.path, 'outbox.db'), { maxResults: 1000 });
    const config = parseTransportConfig({ url: `mqtt://127.0.0.1:${port}`, site: 'plant', device: 'disk', reconnect: { minMs: 50, maxMs: 200 } });
    const transport = new MqttTransport({ config, outbox, logger });
    const received: string[] = [];
    let broker: { stop(): Promise<void> } | null = null;
    try {
      await transport.start(); // no broker yet: the results wait in the outbox
      const frame = { source: 'dir:/in', ts: new Date() };
      const ids = Array.from({ length: 30 }, (_, i) => `f-${i}`);
      for (const id of ids) transport.publishResult(decision(id), frame);
      disk.fill();

      broker = await countingBroker(port, received);
      await waitUntil(() => received.length === 30 && transport.stats().inFlight === 0, 10_000, 'every result sent and acknowledged by the broker');
      await waitUntil(() => logs.some((l) => l.msg.startsWith('could not record acknowledgements')), 5000, 'the failed acknowledgement');
      expect(outbox.stats().pending).toBe(30);

      // The broker goes and comes back while the disk is still full: what it acknowledged is not sent again.
      await broker.stop();
      await waitUntil(() => transport.stats().state === 'connecting', 5000, 'the lost connection');
      broker = await countingBroker(port, received);
      await waitUntil(() => transport.stats().connects === 2, 10_000, 'the reconnect');

      disk.free();
      transport.publishResult(decision('after'), frame);
      await waitUntil(() => received.includes('after'), 10_000, 'the result stored after space returned');
      // Read from the outbox itself: the transport records the waiting acknowledgements by itself, no stats read needed.
      await waitUntil(() => outbox.stats().pending === 0, 10_000, 'the acknowledgements recorded');
      expect(received).toEqual([...ids, 'after']);
      expect(outbox.stats()).toEqual({ pending: 0, queued: 31, sent: 31, dropped: 0 });
      expect(logs.filter((l) => l.msg.startsWith('could not record acknowledgements'))).toHaveLength(1);
      expect(logs.some((l) => l.msg === 'acknowledgements recorded again')).toBe(true);
    } finally {
      await transport.stop();
      outbox.close();
      await broker?.stop();
    }
  });
});
