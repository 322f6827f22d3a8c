import type { IncomingMessage } from 'node:http';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openAuditDbReadOnly, queryDecisions } from '../../src/audit';
import type { AuditEvent } from '../../src/audit/events';
import { keepReviewedBytes, locateFrame } from '../../src/audit/frame-store';
import { SgmoeError } from '../../src/errors';
import { sha256Hex } from '../../src/model/integrity';
import { OperatorTokens } from '../../src/node/dashboard/auth';
import { HeldFrames } from '../../src/node/dashboard/held-frames';
import { RefusalReporter } from '../../src/node/dashboard/refusals';
import { parseNodeConfig } from '../../src/node/config';
import { redact } from '../../src/redact';
import { sgmoe, startSgmoe } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const TOKEN = 'line-1-operator-token-0123456789';
const withAuth = (authorization?: string) => ({ headers: authorization === undefined ? {} : { authorization } }) as IncomingMessage;
const LINE = join(__dirname, '..', '..', 'models', 'fashion-line-anomaly');
const SAMPLE = join(LINE, 'samples', readdirSync(join(LINE, 'samples')).find((f) => f.endsWith('.png'))!);
const PNG = readFileSync(SAMPLE);

describe('the operator token', () => {
  it('passes the exact token only, and says whether the token was missing or wrong', () => {
    const token = new OperatorTokens(TOKEN);
    expect(() => token.check(withAuth(`Bearer ${TOKEN}`))).not.toThrow();
    expect(() => token.check(withAuth(`bearer ${TOKEN}`))).not.toThrow();
    for (const [header, reason] of [[undefined, 'missing'], ['', 'missing'], [TOKEN, 'missing'], [`Basic ${TOKEN}`, 'missing'], [`Bearer ${TOKEN.toUpperCase()}`, 'wrong'], [`Bearer ${TOKEN}0`, 'wrong']] as const) {
      let thrown: unknown;
      try {
        token.check(withAuth(header));
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toMatchObject({ code: 'E_DASHBOARD_UNAUTHORISED', details: { reason } });
    }
  });

  it("names the operator whose token it is (null for the shared one); refuses a short, shared or unnamed operator's token", () => {
    const anna = 'anna-own-operator-token-987654321';
    const tokens = new OperatorTokens(TOKEN, [{ name: 'anna', token: anna }, { name: 'ben.k', token: `${anna}-ben` }]);
    expect([TOKEN, anna, `${anna}-ben`].map((t) => tokens.check(withAuth(`Bearer ${t}`)))).toEqual([null, 'anna', 'ben.k']);
    expect(() => tokens.check(withAuth(`Bearer ${anna}x`))).toThrow(expect.objectContaining({ code: 'E_DASHBOARD_UNAUTHORISED' }));
    expect(new OperatorTokens(undefined, [{ name: 'anna', token: anna }]).check(withAuth(`Bearer ${anna}`))).toBe('anna');
    for (const [operators, says] of [
      [[{ name: 'anna', token: 'short' }], `operator "anna"'s token to have at least 16`],
      [[{ name: 'anna', token: TOKEN }], 'equal to another'],
      [[{ name: 'anna', token: anna }, { name: 'anna', token: `${anna}2` }], '"anna" twice'],
      [[{ name: '../x', token: anna }], 'operator name'],
    ] as const) {
      expect(() => new OperatorTokens(TOKEN, operators)).toThrow(expect.objectContaining({ code: 'E_DASHBOARD_TOKEN', message: expect.stringContaining(says) }));
    }
  });

  it('is redacted wherever the node config leaves the device', () => {
    const config = parseNodeConfig({ model: 'm', dashboard: { port: 0, host: '0.0.0.0', token: TOKEN, operators: [{ name: 'anna', token: `${TOKEN}-anna` }] } });
    expect(redact(config).dashboard).toEqual({ port: 0, host: '0.0.0.0', token: '***', operators: [{ name: 'anna', token: '***' }], withoutToken: false });
    expect(() => parseNodeConfig({ model: 'm', dashboard: { port: 0, token: 'short' } })).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
  });

  it('refuses the opt-out under its old name, which covered verdicts only, naming the new one', () => {
    for (const value of [true, false]) {
      expect(() => parseNodeConfig({ model: 'm', dashboard: { port: 0, host: '0.0.0.0', reviewsWithoutToken: value } })).toThrow(
        expect.objectContaining({ code: 'E_CONFIG_INVALID', message: expect.stringContaining('dashboard.reviewsWithoutToken: renamed: use dashboard.withoutToken') }),
      );
    }
    expect(parseNodeConfig({ model: 'm', dashboard: { port: 0, host: '0.0.0.0', withoutToken: true } }).dashboard?.withoutToken).toBe(true);
  });
});

describe('refused dashboard requests in the audit log', () => {
  it('writes the first refusal, folds those within the interval into the next event written, and loses none', () => {
    const events: AuditEvent[] = [];
    let now = 1_000_000;
    const reporter = new RefusalReporter((e) => events.push(e), 60_000, () => now);
    const refusal = new SgmoeError('E_DASHBOARD_UNAUTHORISED', 'expected the operator token, found a token that does not match', { reason: 'wrong' });
    reporter.refused(refusal, { remote: '10.0.0.7', method: 'GET', path: '/api/decisions' });
    now += 30_000;
    reporter.refused(refusal, { remote: '10.0.0.7', method: 'POST', path: '/api/review' });
    reporter.refused(refusal, { remote: '10.0.0.8', method: 'GET', path: '/metrics' });
    now += 30_000;
    reporter.refused(refusal, { remote: '10.0.0.9', method: 'HEAD', path: `/${'x'.repeat(300)}` });
    expect(events.map((e) => [e.kind, e.ts, e.details])).toEqual([
      ['dashboard_refused', 1_000_000, { code: 'E_DASHBOARD_UNAUTHORISED', reason: 'wrong', method: 'GET', path: '/api/decisions', remote: '10.0.0.7', suppressed: 0 }],
      // A probed path is cut short: attacker-chosen text, kept to what shows what was asked for.
      ['dashboard_refused', 1_060_000, { code: 'E_DASHBOARD_UNAUTHORISED', reason: 'wrong', method: 'HEAD', path: `/${'x'.repeat(199)}`, remote: '10.0.0.9', suppressed: 2 }],
    ]);
    expect(events[0].message).toBe('dashboard request GET /api/decisions refused from 10.0.0.7: expected the operator token, found a token that does not match');
  });
});

describe('frames held for review', () => {
  it('holds the newest frames within the byte budget, each as a buffer of its own', () => {
    const held = new HeldFrames(250);
    const chunk = Buffer.alloc(1000, 7);
    held.hold(1, chunk.subarray(0, 100));
    held.hold(2, Buffer.alloc(100, 2));
    expect(held.get(1)!.buffer.byteLength).toBe(100); // a copy, not the 1000-byte chunk it was a view into
    held.hold(3, Buffer.alloc(100, 3));
    expect([held.get(1), held.get(2)?.[0], held.get(3)?.[0]]).toEqual([undefined, 2, 3]);
    held.hold(4, Buffer.alloc(300));
    expect(held.get(4)).toBeUndefined();
    held.release(2);
    held.hold(5, Buffer.alloc(100, 5));
    expect([held.get(3)?.[0], held.get(5)?.[0]]).toEqual([3, 5]);
  });

  it('keeps held bytes for export only when they are the bytes the audit row names', () => {
    const tmp = tempDir('sgmoe-review-guard-');
    try {
      const sha = sha256Hex(PNG);
      expect(keepReviewedBytes(tmp.path, sha256Hex(Buffer.from('other')), PNG)).toBeNull();
      expect(keepReviewedBytes(tmp.path, sha256Hex(Buffer.from('not an image')), Buffer.from('not an image'))).toBeNull();
      const kept = keepReviewedBytes(tmp.path, sha, PNG);
      expect(kept).toBe(join(tmp.path, 'reviewed', `${sha}.png`));
      expect(locateFrame(tmp.path, sha)).toBe(kept);
      expect(readFileSync(kept!).equals(PNG)).toBe(true);
      expect(readdirSync(join(tmp.path, 'reviewed'))).toEqual([`${sha}.png`]);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('sgmoe run with the dashboard on the network', () => {
  const tmp = tempDir('sgmoe-review-guard-run-');
  afterAll(() => tmp.cleanup());

  /** `sgmoe run --once` over one frame, with the dashboard on every interface; what it printed. */
  async function run(env: NodeJS.ProcessEnv, name: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const dir = join(tmp.path, name);
    mkdirSync(join(dir, 'inbox'), { recursive: true });
    copyFileSync(SAMPLE, join(dir, 'inbox', 'frame.png'));
    const config = { model: LINE, device: 'x86_64-cpu', threads: 1, sources: [{ uri: `dir:${join(dir, 'inbox')}` }], audit: { file: join(dir, 'audit.db'), frames: { keep: 'none' } }, dashboard: { port: 0, host: '0.0.0.0' }, once: true };
    writeFileSync(join(dir, 'node.json'), JSON.stringify(config));
    const child = startSgmoe(['run', '--config', join(dir, 'node.json')], { SGMOE_LOG_LEVEL: 'error', ...env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const status = await new Promise<number | null>((done) => child.on('close', done));
    return { status, stdout, stderr };
  }

  it('without a token the dashboard does not start (the node still decides); SGMOE_DASHBOARD_TOKEN serves it', async () => {
    const refused = await run({ SGMOE_DASHBOARD_TOKEN: '' }, 'refused');
    expect(refused.status).toBe(0);
    expect(refused.stderr).toContain('dashboard not started: expected an operator token to serve the dashboard on 0.0.0.0');
    expect(refused.stdout).toMatch(/ingested 1 = decided 1 /);
    // A fault where the node reports (the summary here; status, health and the audit log too), not only a line.
    expect(refused.stdout).toMatch(/fault +E_DASHBOARD_TOKEN: dashboard not started: expected an operator token .*; the node runs without its dashboard and \/metrics until restarted/);
    const served = await run({ SGMOE_DASHBOARD_TOKEN: TOKEN }, 'served');
    expect(served.status).toBe(0);
    expect(served.stderr).toMatch(/dashboard: http:\/\/0\.0\.0\.0:\d+\//);
  });

  it('a verdict from the CLI on a frame whose bytes are not kept is recorded, and says it has no pixels', () => {
    const auditFile = join(tmp.path, 'refused', 'audit.db');
    const db = openAuditDbReadOnly(auditFile);
    const [decision] = queryDecisions(db, {}, { limit: 1 });
    db.close();
    const reviewed = sgmoe('audit', 'review', '--db', auditFile, '--frame', decision.frameId, '--verdict', 'defect', '--by', 'anna');
    expect(reviewed.status).toBe(0);
    expect(JSON.parse(reviewed.stdout)).toMatchObject({ frameId: decision.frameId, verdict: 'defect', bytes: null });
    expect(reviewed.stderr).toContain('recorded without pixels');
  });
});
