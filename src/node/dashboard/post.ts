import type { IncomingMessage } from 'node:http';
import { SgmoeError } from '../../errors';

/** A review is a few hundred bytes; anything much larger is not one. */
const MAX_BODY = 4096;

/**
 * Refuses a state-changing request a page of another site could make in the operator's browser (CSRF):
 * - the body must be `application/json`, which a cross-site form cannot send and a cross-site fetch can only send
 *   after a preflight this server never grants (it sends no CORS headers);
 * - `Origin`, which browsers send on every POST, must be this dashboard's own (the Host, already checked against
 *   DNS rebinding); `Sec-Fetch-Site`, where sent, must say same-origin.
 * A request without Origin comes from no browser page (curl, a script on the device) and is let through.
 */
export function checkSameOrigin(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    throw new SgmoeError('E_DASHBOARD_BODY', `expected content-type application/json, found ${JSON.stringify(req.headers['content-type'] ?? null)}`);
  }
  const origin = req.headers.origin;
  // https too: the same host behind a TLS-terminating proxy is still this dashboard.
  if (origin !== undefined && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`) {
    throw new SgmoeError('E_DASHBOARD_ORIGIN', `expected a request from this dashboard's own page (origin http://${req.headers.host}), found origin ${JSON.stringify(origin)}`);
  }
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    throw new SgmoeError('E_DASHBOARD_ORIGIN', `expected a same-origin request, found Sec-Fetch-Site ${JSON.stringify(site)}`);
  }
}

/** The request's JSON body, at most MAX_BODY bytes. */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new SgmoeError('E_DASHBOARD_BODY', `expected a JSON body of at most ${MAX_BODY} bytes, found more`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new SgmoeError('E_DASHBOARD_BODY', 'expected a JSON body, found text that does not parse as JSON');
  }
}
