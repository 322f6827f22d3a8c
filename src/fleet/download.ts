import { open, rename, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { SgmoeError, errorMessage } from '../errors';

export interface DownloadOptions {
  /** Refuse anything larger (declared or received). */
  maxBytes: number;
  /** The whole download, resumed part included, must finish within this. */
  timeoutMs: number;
  onProgress?: (received: number, total: number | null) => void;
}

export interface DownloadResult {
  bytes: number;
  /** Bytes that were already in `dest.part` from an earlier, interrupted attempt. */
  resumedFrom: number;
}

/** Total size from `Content-Range: bytes a-b/total`, or null when the server does not say. */
function rangeTotal(header: string | null): number | null {
  const m = header ? /\/(\d+)\s*$/.exec(header) : null;
  return m ? Number(m[1]) : null;
}

/**
 * Downloads `url` to `dest` through `dest.part`. An interrupted download leaves the part file, and the next
 * attempt asks only for the rest (HTTP Range); a server that ignores the range sends it all again.
 */
export async function downloadFile(url: string, dest: string, options: DownloadOptions): Promise<DownloadResult> {
  const part = `${dest}.part`;
  const have = (await stat(part).catch(() => null))?.size ?? 0;
  const signal = AbortSignal.timeout(options.timeoutMs);
  const timedOut = (err: unknown): SgmoeError =>
    signal.aborted
      ? new SgmoeError('E_DOWNLOAD_TIMEOUT', `download of ${url} did not finish within ${options.timeoutMs} ms (the part kept resumes next time)`)
      : new SgmoeError('E_DOWNLOAD_FAILED', `download of ${url} failed: ${errorMessage(err)}`, undefined, { cause: err });

  let response: Response;
  try {
    response = await fetch(url, { signal, headers: have > 0 ? { range: `bytes=${have}-` } : {} });
  } catch (err) {
    throw timedOut(err);
  }
  if (response.status === 416 && have > 0 && rangeTotal(response.headers.get('content-range')) === have) {
    // The part is already whole: an earlier attempt stopped between the last byte and the rename.
    await response.body?.cancel();
    await rename(part, dest);
    return { bytes: have, resumedFrom: have };
  }
  const resumed = response.status === 206;
  if (!(response.ok && (response.status === 200 || resumed))) {
    await response.body?.cancel();
    throw new SgmoeError('E_DOWNLOAD_HTTP', `GET ${url}: expected 200 or 206, found ${response.status} ${response.statusText}`, { status: response.status });
  }
  const start = resumed ? have : 0;
  const length = response.headers.get('content-length');
  const total = resumed ? rangeTotal(response.headers.get('content-range')) : length === null ? null : Number(length);
  const tooLarge = (size: number): SgmoeError =>
    new SgmoeError('E_DOWNLOAD_TOO_LARGE', `${url} is ${size} bytes or more, the limit is ${options.maxBytes}`, { limit: options.maxBytes, size });
  if (total !== null && total > options.maxBytes) {
    await response.body?.cancel();
    await rm(part, { force: true });
    throw tooLarge(total);
  }

  const file = await open(part, resumed ? 'a' : 'w');
  let received = start;
  try {
    if (response.body) {
      for await (const chunk of Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)) {
        received += (chunk as Buffer).length;
        if (received > options.maxBytes) throw tooLarge(received);
        await file.write(chunk as Buffer);
        options.onProgress?.(received, total);
      }
    }
    await file.sync();
  } catch (err) {
    await file.close();
    if (err instanceof SgmoeError) {
      await rm(part, { force: true });
      throw err;
    }
    throw timedOut(err);
  }
  await file.close();
  if (total !== null && received !== total) {
    throw new SgmoeError('E_DOWNLOAD_FAILED', `download of ${url} ended at ${received} of ${total} bytes (the part kept resumes next time)`);
  }
  await rename(part, dest);
  return { bytes: received, resumedFrom: start };
}
