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

/** An operator's name, as verdicts record it. */
export const OPERATOR_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$/;

/** A named operator's token (`dashboard.operators`). */
export interface NamedToken {
  name: string;
  token: string;
}

/**
 * The tokens every request but the page itself must carry (`Authorization: Bearer TOKEN`) when any is set: the shared
 * operator token, and one per named operator, whose verdicts are then recorded under that name (a name typed on the
 * page is not proof of who clicked). Compared as sha256 digests with timingSafeEqual, against every token whatever
 * matched: equal lengths whatever was sent, and no early exit that would tell an attacker how much was right.
 */
export class OperatorTokens {
  private readonly expected: Array<{ operator: string | null; digest: Buffer }> = [];

  constructor(shared: string | undefined, operators: readonly NamedToken[] = []) {
    const named = operators.map((o) => [o.name, o.token] as const);
    for (const [operator, token] of [...(shared === undefined ? [] : [[null, shared] as const]), ...named]) {
      const whose = operator === null ? 'the operator token' : `operator ${JSON.stringify(operator)}'s token`;
      if (operator !== null && !OPERATOR_NAME.test(operator)) {
        throw new SgmoeError('E_DASHBOARD_TOKEN', `expected an operator name of letters, digits, '.', '-' and '_' (at most 40), found ${JSON.stringify(operator)}`);
      }
      if (token.length < MIN_TOKEN_LENGTH) {
        throw new SgmoeError('E_DASHBOARD_TOKEN', `expected ${whose} to have at least ${MIN_TOKEN_LENGTH} characters, found ${token.length}`);
      }
      if (operator !== null && this.expected.some((e) => e.operator === operator)) {
        throw new SgmoeError('E_DASHBOARD_TOKEN', `expected each operator named once, found ${JSON.stringify(operator)} twice`);
      }
      const d = digest(token);
      if (this.expected.some((e) => e.digest.equals(d))) {
        throw new SgmoeError('E_DASHBOARD_TOKEN', `expected every dashboard token to differ, found ${whose} equal to another: it would not say who reviewed`);
      }
      this.expected.push({ operator, digest: d });
    }
  }

  /** The named operator the request's token belongs to (null for the shared token); throws E_DASHBOARD_UNAUTHORISED without a token that matches. */
  check(req: IncomingMessage): string | null {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!match) {
      throw new SgmoeError('E_DASHBOARD_UNAUTHORISED', 'expected the operator token (Authorization: Bearer TOKEN), found none', { reason: 'missing' });
    }
    const sent = digest(match[1]);
    let found: { operator: string | null } | undefined;
    for (const e of this.expected) if (timingSafeEqual(sent, e.digest) && !found) found = e;
    if (!found) throw new SgmoeError('E_DASHBOARD_UNAUTHORISED', 'expected the operator token, found a token that does not match', { reason: 'wrong' });
    return found.operator;
  }
}

/**
 * The tokens the dashboard requires, or none; refuses to serve the network without one unless the config says so
 * explicitly (`withoutToken`): there, anyone who can reach the port could read the frames (a factory's products)
 * and, with an audit log, write verdicts that become training data.
 */
export function operatorTokens(options: { host: string; token?: string; operators?: readonly NamedToken[]; withoutToken?: boolean }): OperatorTokens | undefined {
  if (options.token !== undefined || (options.operators?.length ?? 0) > 0) return new OperatorTokens(options.token, options.operators);
  if (isLoopback(options.host) || options.withoutToken) return undefined;
  throw new SgmoeError(
    'E_DASHBOARD_TOKEN',
    `expected an operator token to serve the dashboard on ${options.host}, a non-loopback address, found none: set dashboard.token ` +
      `(or SGMOE_DASHBOARD_TOKEN) or dashboard.operators, bind to 127.0.0.1, or set dashboard.withoutToken to let anyone who can reach the port ` +
      `read it (and, with an audit log, write verdicts)`,
    { host: options.host },
  );
}
