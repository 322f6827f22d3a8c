import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { SgmoeError } from '../../errors';

/** Shorter tokens are guessable over a network: refused as configuration. */
export const MIN_TOKEN_LENGTH = 16;

/** The bind addresses only this machine can reach; every other one (0.0.0.0, a LAN address, a name) is the network's. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/**
 * The operator token every request but the page itself must carry (`Authorization: Bearer TOKEN`) when one is set.
 * Compared as sha256 digests with timingSafeEqual: equal lengths whatever was sent, and no early exit that would
 * tell an attacker how many leading characters were right.
 */
export class OperatorToken {
  private readonly expected: Buffer;

  constructor(token: string) {
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new SgmoeError('E_DASHBOARD_TOKEN', `expected an operator token of at least ${MIN_TOKEN_LENGTH} characters, found ${token.length}`);
    }
    this.expected = digest(token);
  }

  /** Throws E_DASHBOARD_UNAUTHORISED unless the request carries the token. */
  check(req: IncomingMessage): void {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!match) {
      throw new SgmoeError('E_DASHBOARD_UNAUTHORISED', 'expected the operator token (Authorization: Bearer TOKEN), found none', { reason: 'missing' });
    }
    if (!timingSafeEqual(digest(match[1]), this.expected)) {
      throw new SgmoeError('E_DASHBOARD_UNAUTHORISED', 'expected the operator token, found a token that does not match', { reason: 'wrong' });
    }
  }
}

/**
 * The token the dashboard requires, or none; refuses to serve the network without one unless the config says so
 * explicitly (`withoutToken`): there, anyone who can reach the port could read the frames (a factory's products)
 * and, with an audit log, write verdicts that become training data.
 */
export function operatorToken(options: { host: string; token?: string; withoutToken?: boolean }): OperatorToken | undefined {
  if (options.token !== undefined) return new OperatorToken(options.token);
  if (isLoopback(options.host) || options.withoutToken) return undefined;
  throw new SgmoeError(
    'E_DASHBOARD_TOKEN',
    `expected an operator token to serve the dashboard on ${options.host}, a non-loopback address, found none: set dashboard.token ` +
      `(or SGMOE_DASHBOARD_TOKEN), bind to 127.0.0.1, or set dashboard.withoutToken to let anyone who can reach the port ` +
      `read it (and, with an audit log, write verdicts)`,
    { host: options.host },
  );
}
