import type { Database } from 'better-sqlite3';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { z } from 'zod';
import { openAuditDbReadOnly } from '../../audit/open';
import { framesDirOf, keepReviewedBytes } from '../../audit/frame-store';
import { listEvents, queryDecisions } from '../../audit/query';
import { EventLog } from '../../audit/events';
import { contradicted, latestVerdicts, openReviewDb, recordReview, shownKey } from '../../audit/review';
import { SgmoeError, errorCategory, errorCode, errorMessage } from '../../errors';
import { validate } from '../../validate';
import { silentLogger, type Logger } from '../../log';
import type { EdgeNode } from '../edge-node';
import { describeAnomalyExit } from '../../engine/tasks';
import { attachMetrics } from '../metrics';
import { storageNotices } from '../notices';
import { operatorTokens, type NamedToken } from './auth';
import { ConditionView } from './condition';
import { PAGE_CSP, PAGE_HTML } from './page';
import { checkSameOrigin, readJsonBody } from './post';
import { RecentDecisions } from './recent';
import { RefusalReporter } from './refusals';
import { anomalyRateFromAudit, anomalyRateFromRecent, usageFromAudit, usageFromRecent, usageWindow } from './usage';

export interface DashboardOptions {
  /** 0 = a free port chosen by the OS (the URL says which). */
  port: number;
  host?: string;
  /**
   * The node's audit database: expert usage and alarm history then cover every decision, not only the recent ones,
   * and operators can mark frames good or defect (POST /api/review).
   */
  auditFile?: string;
  /** Memory for the recent frames' bytes, so a verdict on one the frame store did not keep keeps its pixels (default 32 MiB). */
  heldFrameBytes?: number;
  /**
   * The operator token every request but the page itself then requires (`Authorization: Bearer TOKEN`), at least
   * 16 characters. Required to serve on a non-loopback address, unless `withoutToken` says anyone who reaches the
   * port may read (and, with an audit log, write verdicts).
   */
  token?: string;
  /** Tokens of named operators (each at least 16 characters): their verdicts are recorded under their name. */
  operators?: readonly NamedToken[];
  withoutToken?: boolean;
  logger?: Logger;
}

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const decisionsQuery = z.object({ after: int(0, Number.MAX_SAFE_INTEGER).default(0), limit: int(1, 1000).default(50) }).strict();
const usageQuery = z.object({ windowS: int(10, 7 * 86_400).default(300), buckets: int(1, 240).default(60) }).strict();
/** Up to every frame the dashboard holds (RecentDecisions' capacity). */
const anomaliesQuery = usageQuery.extend({ limit: int(1, 200).default(20) }).strict();
/** Alarm history shown: the last day. */
const ALARM_HISTORY_MS = 86_400_000;

function parseQuery<T>(schema: z.ZodType<T>, url: URL): T {
  return validate(schema, Object.fromEntries(url.searchParams), { code: 'E_DASHBOARD_QUERY', where: `the query of ${url.pathname}` });
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  res.end(body);
}

const sendJson = (res: ServerResponse, status: number, value: unknown) => send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));

/**
 * Which Host headers name this dashboard, against DNS rebinding (a page of another site whose name now resolves
 * to the device): the address it is bound to and `localhost`; bound to every interface, any IP address and the
 * machine's host name too. Never a name an attacker controls.
 */
function allowedHosts(bound: string): (header: string | undefined) => boolean {
  const everywhere = bound === '0.0.0.0' || bound === '::';
  const names = new Set(['localhost', bound.toLowerCase(), ...(everywhere ? [hostname().toLowerCase()] : [])]);
  return (header) => {
    if (!header) return false;
    let name: string;
    try {
      name = new URL(`http://${header}`).hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
    } catch {
      return false;
    }
    return names.has(name) || (everywhere && isIP(name) !== 0);
  };
}

/**
 * The node's dashboard on one port: the page (inline JS and CSS, nothing fetched from elsewhere), JSON APIs it
 * polls every second, and `/metrics` for Prometheus; with an operator token set, only the page is served without it.
 * It only listens to the node's events and reads its snapshot and (read-only) its audit database, so it never slows
 * or changes the node.
 */
export async function startDashboard(node: EdgeNode, options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1';
  const log = (options.logger ?? silentLogger).child({ module: 'dashboard' });
  // Checked before anything opens: a dashboard that would serve the network without a token never starts.
  const tokens = operatorTokens({ host, token: options.token, operators: options.operators, withoutToken: options.withoutToken });
  const operatorNames = new Set((options.operators ?? []).map((o) => o.name));
  const db: Database | undefined = options.auditFile ? openAuditDbReadOnly(options.auditFile) : undefined;
  // Reviews write through a connection of their own; reading stays on the read-only one.
  let reviews: { db: Database; framesDir: string; events: EventLog } | undefined;
  try {
    if (options.auditFile) {
      const reviewDb = openReviewDb(options.auditFile);
      reviews = { db: reviewDb, framesDir: framesDirOf(options.auditFile), events: new EventLog(reviewDb, { logger: log }) };
    }
  } catch (err) {
    db?.close();
    throw err;
  }
  // Requests refused for want of the token: in the audit log when there is one, in the log otherwise.
  const events = reviews?.events;
  const refusals = new RefusalReporter(events ? (e) => void events.write(e) : (e) => log.warn(e.details ?? {}, e.message));
  // Frame bytes are held only where a verdict can use them: with the audit log to record it.
  const recent = new RecentDecisions(node, undefined, reviews ? options.heldFrameBytes : 0);
  // A restarted node's anomalies stay reviewable from the page: the latest ones the audit log holds.
  if (db && reviews && node.engine.task.name === 'anomaly') {
    const anomalous = node.engine.manifest.labels[1];
    recent.seed(queryDecisions(db, { status: 'ok', label: anomalous }, { order: 'desc', limit: recent.capacity }), reviews.framesDir);
  }
  const metrics = attachMetrics(node);
  const condition = new ConditionView(node);
  const experts = () => node.engine.manifest.parts.experts.length;

  /** A GET route; `operator` is the named operator whose token the request carried, null for the shared token or none. */
  const routes: Record<string, (url: URL, res: ServerResponse, operator: string | null) => Promise<void> | void> = {
    '/': (_url, res) => send(res, 200, 'text/html; charset=utf-8', PAGE_HTML, { 'content-security-policy': PAGE_CSP }),
    '/api/snapshot': (_url, res) => sendJson(res, 200, { ...node.snapshot(), ...earlyExitInWords(node) }),
    '/api/decisions': (url, res) => {
      const { after, limit } = parseQuery(decisionsQuery, url);
      sendJson(res, 200, { capacity: recent.capacity, decisions: recent.list(after, limit) });
    },
    '/api/usage': (url, res) => {
      const { windowS, buckets } = parseQuery(usageQuery, url);
      const window = usageWindow(windowS * 1000, buckets);
      sendJson(res, 200, db ? usageFromAudit(db, window, experts()) : usageFromRecent(recent.list(), window, experts()));
    },
    '/api/alarms': (_url, res) => {
      const history = db ? listEvents(db, { since: Date.now() - ALARM_HISTORY_MS }, ['alarm_raised', 'alarm_cleared']).slice(-50) : [];
      const snapshot = node.snapshot();
      sendJson(res, 200, {
        active: snapshot.alarms.map(({ window: _window, ...alarm }) => alarm),
        condition: snapshot.conditionAlarms,
        faults: snapshot.faults,
        notices: storageNotices(snapshot),
        history,
      });
    },
    '/api/anomalies': (url, res, operator) => {
      const { windowS, buckets, limit } = parseQuery(anomaliesQuery, url);
      const window = usageWindow(windowS * 1000, buckets);
      const all = (verdict: string) => recent.list().filter((e) => e.status === 'decided' && e.anomaly?.verdict === verdict);
      // The frames the model passed as good too: where a missed defect hides, and an operator can still mark one.
      const [allLatest, allPassed] = [all('anomalous'), all('good')];
      const latest = allLatest.slice(-limit).reverse();
      const passed = allPassed.slice(-limit).reverse();
      const verdicts = db ? latestVerdicts(db, [...latest, ...passed]) : new Map();
      const withReview = (e: (typeof latest)[number]) => ({ ...e, review: verdicts.get(shownKey(e)) ?? null });
      sendJson(res, 200, {
        task: node.engine.task.name,
        reviewable: reviews !== undefined,
        // Who the page's verdicts will be recorded as, when its token names an operator.
        operator,
        rate: db ? anomalyRateFromAudit(db, window) : anomalyRateFromRecent(recent.list(), window),
        latest: latest.map(withReview),
        passed: passed.map(withReview),
        // How many of each the node holds (of its `capacity` recent frames): the page offers to show them all.
        held: { latest: allLatest.length, passed: allPassed.length },
        capacity: recent.capacity,
      });
    },
    '/api/condition': (_url, res) => sendJson(res, 200, condition.snapshot()),
    '/metrics': async (_url, res) => send(res, 200, metrics.registry.contentType, await metrics.registry.metrics()),
  };
  // State-changing routes: only with the audit log to record into, and only from this dashboard's own page.
  const postRoutes: Record<string, (req: IncomingMessage, res: ServerResponse, operator: string | null) => Promise<void>> = reviews
    ? {
        '/api/review': async (req, res, operator) => {
          checkSameOrigin(req);
          const body = await readJsonBody(req);
          // A named operator's token says who reviewed; otherwise the page may name anyone but a named operator.
          // The verdict itself is validated by the audit module.
          const named = body !== null && typeof body === 'object' ? (body as { reviewer?: unknown }).reviewer : undefined;
          if (operator === null && typeof named === 'string' && operatorNames.has(named)) {
            throw new SgmoeError('E_REVIEW_INVALID', `expected ${JSON.stringify(named)}'s own token for a verdict under that name, found the shared one`);
          }
          const input = body !== null && typeof body === 'object' ? { reviewer: 'dashboard', ...body, ...(operator !== null && { reviewer: operator }) } : body;
          const review = recordReview(reviews.db, input, 'dashboard', { framesDir: reviews.framesDir });
          // A frame the store did not keep (a missed defect, judged good): its pixels from the page's recent frames.
          const held = review.bytes === null && review.inputSha256 ? recent.bytesOf(review.inputSha256) : undefined;
          const bytes = held ? keepHeld(reviews.framesDir, review.inputSha256!, held) : review.bytes;
          // The same image judged otherwise under another frame id: the export leaves both out until they agree.
          const contradicts = contradicted(reviews.db, review).map(({ frameId, verdict, kind, reviewer }) => ({ frameId, verdict, kind, reviewer }));
          sendJson(res, 201, { ...review, bytes, contradicts });
        },
      }
    : {};

  // The verdict is recorded already: a disk that refuses its pixels leaves it without them (bytes null), as reported.
  const keepHeld = (framesDir: string, sha256: string, bytes: Buffer): string | null => {
    try {
      return keepReviewedBytes(framesDir, sha256, bytes);
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'could not keep a reviewed frame for export');
      return null;
    }
  };

  // The page holds no data; everything else (every read, the verdicts, /metrics) needs a token when any is set.
  // Returns the named operator the token belongs to, else null.
  const authorise = (req: IncomingMessage, path: string): string | null => {
    if (!tokens || path === '/') return null;
    try {
      return tokens.check(req);
    } catch (err) {
      refusals.refused(err as SgmoeError, { remote: req.socket.remoteAddress, method: req.method, path });
      throw err;
    }
  };

  const hostAllowed = allowedHosts(host);
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (!hostAllowed(req.headers.host)) {
      return sendJson(res, 403, { error: { code: 'E_DASHBOARD_HOST', message: `expected a Host header naming this dashboard (${host}), found ${JSON.stringify(req.headers.host ?? null)}` } });
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://dashboard');
    } catch {
      return sendJson(res, 400, { error: { code: 'E_DASHBOARD_QUERY', message: `expected a request path, found ${JSON.stringify(req.url)}` } });
    }
    try {
      // Before anything else: without the token, not even which routes exist.
      const operator = authorise(req, url.pathname);
      // Own keys only: a path such as /constructor must not find Object's prototype.
      const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
      const post = Object.hasOwn(postRoutes, url.pathname) ? postRoutes[url.pathname] : undefined;
      if (!route && !post) {
        const known = [...Object.keys(routes), ...Object.keys(postRoutes)].join(', ');
        return sendJson(res, 404, { error: { code: 'E_DASHBOARD_NOT_FOUND', message: `expected one of ${known}, found ${url.pathname}` } });
      }
      const allowed = post ? ['POST'] : ['GET', 'HEAD'];
      if (!allowed.includes(req.method ?? '')) {
        res.setHeader('allow', allowed.join(', '));
        return sendJson(res, 405, { error: { code: 'E_DASHBOARD_METHOD', message: `expected ${allowed.join(' or ')} on ${url.pathname}, found ${req.method}` } });
      }
      await (post ? post(req, res, operator) : route!(url, res, operator));
    } catch (err) {
      const code = errorCode(err);
      const status = code === 'E_DASHBOARD_ORIGIN' ? 403 : code === 'E_DASHBOARD_UNAUTHORISED' ? 401 : errorCategory(err) === 'bad-input' ? 400 : 500;
      if (status === 500) log.error({ path: url.pathname, code, err: errorMessage(err) }, 'dashboard request failed');
      if (status === 401) res.setHeader('www-authenticate', 'Bearer realm="sgmoe-dashboard"');
      sendJson(res, status, { error: { code, message: errorMessage(err) } });
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  const release = () => {
    recent.close();
    condition.close();
    metrics.detach();
    db?.close();
    reviews?.db.close();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    release();
    throw new SgmoeError('E_DASHBOARD_LISTEN', `expected to serve the dashboard on ${host}:${options.port}, but: ${errorMessage(err)}`, { host, port: options.port }, { cause: err });
  }
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  log.info({ url }, 'dashboard listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        release();
        server.close(() => resolve());
        // Browsers keep connections alive; without this, close would wait for them to time out.
        server.closeAllConnections();
      })),
  };
}

/** Anomaly packages: the early exit in words, as the page's header says it (the factory's -1e9 "never" is no number to show). */
function earlyExitInWords(node: EdgeNode): { earlyExit?: string } {
  return node.engine.task.currentThreshold === undefined ? {} : { earlyExit: describeAnomalyExit(node.engine.getSettings().threshold) };
}
