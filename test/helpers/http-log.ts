import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface RequestLog {
  /** Base URL, ending with "/". */
  url: string;
  /** Every request received, in order: "GET /name.tar". */
  requests: string[];
  close(): Promise<void>;
}

/**
 * A real HTTP server on 127.0.0.1 that logs every request and serves the files of `dir` whole. Paths for which
 * `stall` says so get their headers and the first `stallAfter` bytes, then nothing (the connection stays open).
 */
export async function logRequests(dir: string, options: { stall?: (path: string) => boolean; stallAfter?: number } = {}): Promise<RequestLog> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    readFile(join(dir, path)).then(
      (data) => {
        res.writeHead(200, { 'content-length': String(data.length) });
        if (options.stall?.(path)) res.write(data.subarray(0, options.stallAfter ?? 1000));
        else res.end(data);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    requests,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
