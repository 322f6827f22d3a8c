import { join } from 'node:path';
import pino from 'pino';
import { listEvents, openAuditDbReadOnly, queryDecisions } from '../../src/audit';
import { startDashboard, type Dashboard, type DashboardOptions } from '../../src/node/dashboard';
import { rawRequest, type RawAnswer } from '../helpers/http';
import { tempDir } from '../helpers/tmp';
import { hotFolder, sampleNode, type SampleNode } from './sample-node';

const TOKEN = 'line-1-operator-token-0123456789';
/** Every route that answers with data: the frames' thumbnails among them, and /metrics. */
const READS = ['/api/snapshot', '/api/decisions', '/api/usage', '/api/alarms', '/api/anomalies', '/api/condition', '/metrics'];

/** A raw request to the dashboard's port over 127.0.0.1, as a machine on the network would make it. */
const call = (dashboard: Dashboard, method: string, path: string, headers: Record<string, string> = {}, body?: string) =>
  rawRequest(dashboard.url, method, path, headers, body);

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const errorCode = (a: RawAnswer) => (JSON.parse(a.text) as { error: { code: string } }).error.code;

/**
 * A real node decides sample frames with its audit log on; dashboards on every interface (0.0.0.0) and on
 * loopback answer raw HTTP requests: with an operator token set, nothing but the page is served without it.
 */
describe('the dashboard with an operator token', () => {
  const tmp = tempDir('sgmoe-dashboard-auth-');
  const auditFile = join(tmp.path, 'audit.db');
  let sample: SampleNode;
  let frameId: string;
  /** On every interface with a token and the audit log, started before the node ran: its recent frames are the run's. */
  let guarded: Dashboard;
  const started: Dashboard[] = [];
  const start = async (options: DashboardOptions) => {
    const dashboard = await startDashboard(sample.node, options);
    started.push(dashboard);
    return dashboard;
  };
  const review = (dashboard: Dashboard, headers: Record<string, string> = {}) =>
    call(dashboard, 'POST', '/api/review', { 'content-type': 'application/json', ...headers }, JSON.stringify({ frameId, verdict: 'good' }));

  beforeAll(async () => {
    sample = await sampleNode({ sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox'), 4)}`, name: 'line-1' }], audit: { file: auditFile } });
    sample.node.setMaxListeners(30);
    guarded = await start({ port: 0, host: '0.0.0.0', auditFile, token: TOKEN });
    await sample.node.run();
    const db = openAuditDbReadOnly(auditFile);
    [{ frameId }] = queryDecisions(db, {}, { limit: 1 });
    db.close();
  });

  afterAll(async () => {
    for (const d of started) await d.close();
    await sample?.node.stop();
    tmp.cleanup();
  });

  it('off loopback, answers every data route (GET, HEAD, the verdicts) with 401 without the token or with a wrong one, and serves the page', async () => {
    const dashboard = guarded;
    for (const path of READS) {
      for (const method of ['GET', 'HEAD']) {
        for (const headers of [{}, bearer(`${TOKEN}x`), bearer(TOKEN.slice(0, -1)), { authorization: TOKEN }]) {
          const refused = await call(dashboard, method, path, headers);
          expect([method, path, refused.status, refused.headers['www-authenticate']]).toEqual([method, path, 401, 'Bearer realm="sgmoe-dashboard"']);
          if (method === 'GET') expect(errorCode(refused)).toBe('E_DASHBOARD_UNAUTHORISED');
        }
      }
    }
    for (const headers of [{}, bearer(`${TOKEN}x`)]) {
      const refused = await review(dashboard, headers);
      expect([refused.status, errorCode(refused)]).toEqual([401, 'E_DASHBOARD_UNAUTHORISED']);
    }
    // Not even which routes exist, nor whether a method fits, without the token.
    expect((await call(dashboard, 'GET', '/nowhere')).status).toBe(401);
    expect((await call(dashboard, 'POST', '/metrics')).status).toBe(401);

    const page = await call(dashboard, 'GET', '/');
    expect([page.status, page.headers['content-type']]).toEqual([200, 'text/html; charset=utf-8']);
    expect(page.text).not.toContain(frameId);
  });

  it('serves every data route and takes a verdict with the token', async () => {
    const dashboard = guarded;
    for (const path of READS) {
      for (const method of ['GET', 'HEAD']) expect([method, path, (await call(dashboard, method, path, bearer(TOKEN))).status]).toEqual([method, path, 200]);
    }
    const decisions = await call(dashboard, 'GET', '/api/decisions', bearer(TOKEN));
    expect((JSON.parse(decisions.text) as { decisions: Array<{ thumbnail: string | null }> }).decisions.length).toBeGreaterThan(0);
    const anomalies = JSON.parse((await call(dashboard, 'GET', '/api/anomalies', bearer(TOKEN))).text) as Record<string, unknown>;
    expect(Object.keys(anomalies).sort()).toEqual(['capacity', 'held', 'latest', 'operator', 'passed', 'rate', 'reviewable', 'task']);
    expect((await call(dashboard, 'GET', '/metrics', bearer(TOKEN))).text).toContain('sgmoe_frames_total');
    expect((await review(dashboard, bearer(TOKEN))).status).toBe(201);
    expect((await call(dashboard, 'GET', '/nowhere', bearer(TOKEN))).status).toBe(404);
  });

  it('audits a refused read with its path, under the one event kind of refused dashboard requests', async () => {
    const dashboard = await start({ port: 0, host: '0.0.0.0', auditFile, token: TOKEN });
    const db = openAuditDbReadOnly(auditFile);
    const before = listEvents(db, {}, ['dashboard_refused']).length;
    db.close();
    await call(dashboard, 'GET', '/api/decisions?limit=5', bearer(`${TOKEN}x`));
    const after = openAuditDbReadOnly(auditFile);
    const events = listEvents(after, {}, ['dashboard_refused']);
    after.close();
    // This dashboard's first refusal is written at once; the ones after it within a minute are folded into the next.
    expect(events.slice(before).map((e) => e.details)).toEqual([
      { code: 'E_DASHBOARD_UNAUTHORISED', reason: 'wrong', method: 'GET', path: '/api/decisions', remote: '127.0.0.1', suppressed: 0 },
    ]);
  });

  it('without an audit log, logs a refused request instead', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const dashboard = await start({ port: 0, host: '0.0.0.0', token: TOKEN, logger });
    expect((await call(dashboard, 'GET', '/metrics')).status).toBe(401);
    expect(lines[0]).toMatchObject({ module: 'dashboard', code: 'E_DASHBOARD_UNAUTHORISED', reason: 'missing', method: 'GET', path: '/metrics', suppressed: 0 });
    expect(lines[0].msg).toBe('dashboard request GET /metrics refused from 127.0.0.1: expected the operator token (Authorization: Bearer TOKEN), found none');
  });

  it('off loopback without a token does not start, with or without an audit log, unless told to let anyone in', async () => {
    for (const auditFileOrNone of [auditFile, undefined]) {
      await expect(startDashboard(sample.node, { port: 0, host: '0.0.0.0', auditFile: auditFileOrNone })).rejects.toMatchObject({
        code: 'E_DASHBOARD_TOKEN',
        message: expect.stringContaining('set dashboard.withoutToken to let anyone who can reach the port read it'),
      });
    }
    const open = await start({ port: 0, host: '0.0.0.0', auditFile, withoutToken: true });
    for (const path of READS) expect([path, (await call(open, 'GET', path)).status]).toEqual([path, 200]);
    expect((await review(open)).status).toBe(201);
    const readOnly = await start({ port: 0, host: '0.0.0.0', withoutToken: true });
    for (const path of READS) expect([path, (await call(readOnly, 'GET', path)).status]).toEqual([path, 200]);
  });

  it('on loopback without a token, serves everything as before', async () => {
    const withLog = await start({ port: 0, auditFile });
    const withoutLog = await start({ port: 0 });
    for (const dashboard of [withLog, withoutLog]) {
      for (const path of ['/', ...READS]) expect([path, (await call(dashboard, 'GET', path)).status]).toEqual([path, 200]);
    }
    expect((await review(withLog)).status).toBe(201);
  });

  it('on loopback with a token, requires it as off loopback', async () => {
    const dashboard = await start({ port: 0, auditFile, token: TOKEN });
    for (const path of READS) expect([path, (await call(dashboard, 'GET', path)).status]).toEqual([path, 401]);
    expect((await review(dashboard)).status).toBe(401);
    expect((await call(dashboard, 'GET', '/')).status).toBe(200);
  });
});
