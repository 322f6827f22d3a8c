import { open, readFile, rename, rm } from 'node:fs/promises';
import type { MqttClient } from 'mqtt';
import { SgmoeError } from '../errors';
import type { ChunkRef } from '../protocol/update';

/** Default chunk size: well under brokers' usual message limits (mosquitto's default is 256 MB, many set 1 MB). */
export const DEFAULT_CHUNK_BYTES = 256 * 1024;

/**
 * For sites without HTTP: publishes a package tar as retained QoS 1 messages `topic/0`, `topic/1`, ... so a device
 * that connects later, or restarts mid-transfer, still gets every chunk. Clear them with `clearChunks` afterwards.
 */
export async function publishChunks(client: MqttClient, tarPath: string, topic: string, chunkBytes = DEFAULT_CHUNK_BYTES): Promise<ChunkRef> {
  const data = await readFile(tarPath);
  const count = Math.max(1, Math.ceil(data.length / chunkBytes));
  for (let i = 0; i < count; i++) {
    await client.publishAsync(`${topic}/${i}`, data.subarray(i * chunkBytes, (i + 1) * chunkBytes), { qos: 1, retain: true });
  }
  return { topic, count, chunkBytes, bytes: data.length };
}

/** Removes retained chunks (an empty retained message deletes the retained one). */
export async function clearChunks(client: MqttClient, ref: ChunkRef): Promise<void> {
  for (let i = 0; i < ref.count; i++) await client.publishAsync(`${ref.topic}/${i}`, Buffer.alloc(0), { qos: 1, retain: true });
}

/** Collects every chunk of `ref` into `dest`, each written at its offset as it arrives, within `timeoutMs` (or until `signal` aborts). */
export async function fetchChunks(client: MqttClient, ref: ChunkRef, dest: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const part = `${dest}.part`;
  const file = await open(part, 'w');
  const pending = new Set(Array.from({ length: ref.count }, (_, i) => i));
  const prefix = `${ref.topic}/`;
  let writes: Promise<unknown> = Promise.resolve();
  let onMessage: (topic: string, payload: Buffer) => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  let onAbort = (): void => undefined;
  try {
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new SgmoeError('E_DOWNLOAD_TIMEOUT', `${pending.size} of ${ref.count} chunks of ${ref.topic} still missing after ${timeoutMs} ms`)),
          timeoutMs,
        );
        onAbort = () => reject(signal?.reason);
        if (signal?.aborted) onAbort();
        signal?.addEventListener('abort', onAbort);
        onMessage = (topic, payload) => {
          const index = topic.startsWith(prefix) ? Number(topic.slice(prefix.length)) : NaN;
          if (!pending.has(index)) return; // foreign topic or a chunk seen already
          const expected = index === ref.count - 1 ? ref.bytes - index * ref.chunkBytes : ref.chunkBytes;
          if (payload.length !== expected) {
            reject(new SgmoeError('E_DOWNLOAD_FAILED', `chunk ${index} of ${ref.topic} has ${payload.length} bytes, expected ${expected}`));
            return;
          }
          pending.delete(index);
          writes = writes.then(() => file.write(payload, 0, payload.length, index * ref.chunkBytes));
          if (pending.size === 0) resolve();
        };
        client.on('message', onMessage);
        client.subscribeAsync(`${prefix}+`, { qos: 1 }).catch(reject);
      });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      client.removeListener('message', onMessage);
      await client.unsubscribeAsync(`${prefix}+`).catch(() => undefined);
    }
    await writes;
    await file.sync();
  } catch (err) {
    await writes.catch(() => undefined);
    await file.close();
    await rm(part, { force: true });
    throw err;
  }
  await file.close();
  await rename(part, dest);
}
