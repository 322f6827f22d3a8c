import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { downloadFile, downloadWithRetry } from '../../src/fleet/download';
import { servePackages, type PackageServer } from '../../src/fleet/serve';
import { startSgmoe } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-fleet-transfer-');
const data = randomBytes(300_000);
let server: PackageServer;

beforeAll(async () => {
  writeFileSync(join(tmp.path, 'pkg.tar'), data);
  writeFileSync(join(tmp.path, '..secret'), 'no');
  server = await servePackages(tmp.path);
});
afterAll(async () => {
  await server.close();
  tmp.cleanup();
});

const get = (path: string, headers: Record<string, string> = {}): Promise<Response> => fetch(`${server.url}${path}`, { headers });

test('serve answers whole files, single ranges and suffix ranges, and 416 past the end', async () => {
  const whole = await get('pkg.tar');
  expect(whole.status).toBe(200);
  expect(whole.headers.get('accept-ranges')).toBe('bytes');
  expect(Buffer.from(await whole.arrayBuffer())).toEqual(data);

  const part = await get('pkg.tar', { range: 'bytes=1000-1999' });
  expect(part.status).toBe(206);
  expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${data.length}`);
  expect(Buffer.from(await part.arrayBuffer())).toEqual(data.subarray(1000, 2000));

  const tail = await get('pkg.tar', { range: 'bytes=-10' });
  expect(Buffer.from(await tail.arrayBuffer())).toEqual(data.subarray(data.length - 10));

  const past = await get('pkg.tar', { range: `bytes=${data.length}-` });
  expect(past.status).toBe(416);
  expect(past.headers.get('content-range')).toBe(`bytes */${data.length}`);
  await past.arrayBuffer();
});

test('serve never leaves its folder', async () => {
  for (const path of ['../etc/passwd', '%2e%2e/%2e%2e/etc/passwd', 'nothing.tar']) {
    const res = await get(path);
    expect(res.status).toBe(404);
    await res.arrayBuffer();
  }
});

test('download resumes from the part an interrupted attempt left, asking only for the rest', async () => {
  const dest = join(tmp.path, 'resumed.tar');
  writeFileSync(`${dest}.part`, data.subarray(0, 120_000));
  const progress: number[] = [];
  const result = await downloadFile(`${server.url}pkg.tar`, dest, { maxBytes: 1e6, timeoutMs: 10_000, onProgress: (n) => progress.push(n) });
  expect(result).toEqual({ bytes: data.length, resumedFrom: 120_000 });
  expect(progress[0]).toBeGreaterThan(120_000);
  expect(readFileSync(dest)).toEqual(data);
  expect(existsSync(`${dest}.part`)).toBe(false);
});

test('download refuses a file above the size limit and keeps nothing', async () => {
  const dest = join(tmp.path, 'big.tar');
  await expect(downloadFile(`${server.url}pkg.tar`, dest, { maxBytes: 1000, timeoutMs: 10_000 })).rejects.toMatchObject({ code: 'E_DOWNLOAD_TOO_LARGE' });
  expect(existsSync(dest) || existsSync(`${dest}.part`)).toBe(false);
});

test('download reports HTTP errors with the status; a 404 is a package not served, not a passing failure', async () => {
  await expect(downloadFile(`${server.url}missing.tar`, join(tmp.path, 'm.tar'), { maxBytes: 1e6, timeoutMs: 10_000 })).rejects.toMatchObject({
    code: 'E_DOWNLOAD_NOT_SERVED',
    category: 'configuration',
    details: { status: 404 },
  });
});

describe('a failed connection says why', () => {
  const opts = { maxBytes: 1e6, timeoutMs: 10_000 };

  test('refused: nothing listens on the port', async () => {
    const port = await closedPort();
    await expect(downloadFile(`http://127.0.0.1:${port}/pkg.tar`, join(tmp.path, 'r.tar'), opts)).rejects.toMatchObject({
      code: 'E_DOWNLOAD_REFUSED',
      message: expect.stringContaining('connection was refused'),
      details: { cause: 'ECONNREFUSED' },
    });
  });

  test('DNS: the host name does not resolve', async () => {
    await expect(downloadFile('http://packages.sgmoe-test.invalid/pkg.tar', join(tmp.path, 'd.tar'), opts)).rejects.toMatchObject({
      code: 'E_DOWNLOAD_DNS',
      message: expect.stringContaining('did not resolve (DNS)'),
    });
  });

  test('TLS: https to a server that speaks plain HTTP', async () => {
    const url = server.url.replace('http://', 'https://');
    await expect(downloadFile(`${url}pkg.tar`, join(tmp.path, 't.tar'), opts)).rejects.toMatchObject({
      code: 'E_DOWNLOAD_TLS',
      category: 'configuration',
      message: expect.stringContaining('TLS'),
    });
  });

  test('a port fetch refuses to use is a configuration error, not retried', async () => {
    const seen: string[] = [];
    await expect(
      downloadWithRetry('http://127.0.0.1:9/pkg.tar', join(tmp.path, 'b.tar'), { ...opts, retries: 2, backoffMs: 1, onRetry: (_a, e) => void seen.push(e.code) }),
    ).rejects.toMatchObject({ code: 'E_DOWNLOAD_URL', category: 'configuration' });
    expect(seen).toEqual([]);
  });

  test('a refused connection is retried with a growing pause, and succeeds once the server is up', async () => {
    const port = await closedPort();
    const dest = join(tmp.path, 'retried.tar');
    const retries: Array<[number, string, number]> = [];
    let late: PackageServer | null = null;
    try {
      const result = await downloadWithRetry(`http://127.0.0.1:${port}/pkg.tar`, dest, {
        ...opts,
        retries: 5,
        backoffMs: 10,
        // The server comes up only after the second failure: the third attempt finds it.
        onRetry: async (attempt, error, pauseMs) => {
          retries.push([attempt, error.code, pauseMs]);
          if (attempt === 2) late = await servePackages(tmp.path, { host: '127.0.0.1', port });
        },
      });
      expect(result.bytes).toBe(data.length);
      expect(retries).toEqual([
        [1, 'E_DOWNLOAD_REFUSED', 10],
        [2, 'E_DOWNLOAD_REFUSED', 20],
      ]);
      expect(readFileSync(dest)).toEqual(data);
    } finally {
      await (late as PackageServer | null)?.close();
    }
  });

  test('retries stop at their count, and a failure that waiting does not fix is not retried', async () => {
    const port = await closedPort();
    const seen: string[] = [];
    const onRetry = (_a: number, e: { code: string }) => void seen.push(e.code);
    await expect(downloadWithRetry(`http://127.0.0.1:${port}/x.tar`, join(tmp.path, 'x.tar'), { ...opts, retries: 2, backoffMs: 1, onRetry })).rejects.toMatchObject({
      code: 'E_DOWNLOAD_REFUSED',
    });
    expect(seen).toEqual(['E_DOWNLOAD_REFUSED', 'E_DOWNLOAD_REFUSED']);
    seen.length = 0;
    await expect(downloadWithRetry(`${server.url}missing.tar`, join(tmp.path, 'y.tar'), { ...opts, retries: 2, backoffMs: 1, onRetry })).rejects.toMatchObject({
      code: 'E_DOWNLOAD_NOT_SERVED',
    });
    expect(seen).toEqual([]);
  });
});

/** A port nothing listens on (taken and released). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((ok) => probe.listen(0, '127.0.0.1', ok));
  const { port } = probe.address() as AddressInfo;
  await new Promise((ok) => probe.close(ok));
  return port;
}

describe('a server that stalls mid-body', () => {
  let stalling: Server;
  let url: string;
  beforeAll(async () => {
    stalling = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(data.length) });
      res.write(data.subarray(0, 50_000)); // then nothing more
    });
    await new Promise<void>((ok) => stalling.listen(0, '127.0.0.1', ok));
    url = `http://127.0.0.1:${(stalling.address() as AddressInfo).port}/pkg.tar`;
  });
  afterAll(async () => {
    stalling.closeAllConnections();
    await new Promise((ok) => stalling.close(ok));
  });

  test('times out and keeps the bytes received, so the next attempt resumes', async () => {
    const dest = join(tmp.path, 'stalled.tar');
    await expect(downloadFile(url, dest, { maxBytes: 1e6, timeoutMs: 500 })).rejects.toMatchObject({ code: 'E_DOWNLOAD_TIMEOUT' });
    expect(statSync(`${dest}.part`).size).toBe(50_000);
    const resumed = await downloadFile(`${server.url}pkg.tar`, dest, { maxBytes: 1e6, timeoutMs: 10_000 });
    expect(resumed.resumedFrom).toBe(50_000);
    expect(readFileSync(dest)).toEqual(data);
  });
});

test('`sgmoe model serve` listens on 127.0.0.1 unless --host says otherwise', async () => {
  const child = startSgmoe(['model', 'serve', tmp.path, '--port', '0']);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.includes('\n')) resolve();
    });
    child.once('exit', () => reject(new Error(`sgmoe model serve exited: ${out}`)));
  });
  child.kill('SIGINT');
  await exited;
  expect(out).toMatch(/ at http:\/\/127\.0\.0\.1:\d+\/ /);
});
