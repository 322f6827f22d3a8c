import { machineAlarmName } from '../maintenance/alarms';
import type { Database } from 'better-sqlite3';
import type { AuditEventKind } from './events';
import type { AuditStatus } from './record';
import { fromColumns, type AuditRow, type DecisionColumns } from './rows';

/** Which decisions to look at. Times are ms since epoch: since inclusive, until exclusive. */
export interface AuditFilter {
  since?: number;
  until?: number;
  label?: string;
  /** An expert index, or 'none' for decisions that ran no expert. */
  expert?: number | 'none';
  status?: AuditStatus;
  modelVersion?: string;
}

/**
 * The WHERE clause of a filter: fixed SQL fragments, one per filter set, with every value bound as a
 * named parameter. Nothing from the caller is ever spliced into SQL.
 */
export function whereClause(f: AuditFilter): { sql: string; params: Record<string, string | number> } {
  const parts: string[] = [];
  const params: Record<string, string | number> = {};
  const add = (sql: string, name?: keyof AuditFilter, value?: string | number) => {
    parts.push(sql);
    if (name !== undefined && value !== undefined) params[name] = value;
  };
  if (f.since !== undefined) add('ts >= @since', 'since', f.since);
  if (f.until !== undefined) add('ts < @until', 'until', f.until);
  if (f.label !== undefined) add('label = @label', 'label', f.label);
  if (f.expert === 'none') add("expert IS NULL AND status = 'ok'");
  else if (f.expert !== undefined) add('expert = @expert', 'expert', f.expert);
  if (f.status !== undefined) add('status = @status', 'status', f.status);
  if (f.modelVersion !== undefined) add('model_version = @modelVersion', 'modelVersion', f.modelVersion);
  return { sql: parts.length > 0 ? `WHERE ${parts.join(' AND ')}` : '', params };
}

export interface QueryOptions {
  /** At most this many rows (default: all). */
  limit?: number;
  /** Oldest first (default) or newest first. */
  order?: 'asc' | 'desc';
}

/** Rows read per statement: enough to keep per-page costs small, few enough to hold in memory. */
const PAGE_ROWS = 2000;

/**
 * Rows one at a time, so an export of millions never holds them all in memory, read in pages of ids so no statement
 * stays open while a consumer waits: an open read holds the writer's checkpoints back and its WAL grows on the disk.
 * Rows committed after the call are left out (the log as it stood then, so an export on a busy node ends); a row
 * retention prunes before its page is read is missed.
 */
export function iterateDecisions(db: Database, filter: AuditFilter, options: QueryOptions = {}): IterableIterator<AuditRow> {
  const { sql, params } = whereClause(filter);
  const desc = options.order === 'desc';
  const page = db.prepare(
    `SELECT * FROM decisions ${sql ? `${sql} AND` : 'WHERE'} id ${desc ? '<' : '>'} @from AND id <= @last ORDER BY id ${desc ? 'DESC' : 'ASC'} LIMIT @rows`,
  );
  const last = db.prepare('SELECT coalesce(max(id), 0) FROM decisions').pluck().get() as number;
  return (function* () {
    let left = options.limit ?? Infinity;
    let from = desc ? last + 1 : 0;
    while (left > 0) {
      const rows = Math.min(PAGE_ROWS, left);
      const columns = page.all({ ...params, from, last, rows }) as DecisionColumns[];
      for (const c of columns) yield fromColumns(c);
      if (columns.length < rows) return;
      left -= rows;
      from = columns[columns.length - 1].id;
    }
  })();
}

/** How many decisions match a filter. */
export function countDecisions(db: Database, filter: AuditFilter): number {
  const { sql, params } = whereClause(filter);
  return db.prepare(`SELECT count(*) FROM decisions ${sql}`).pluck().get(params) as number;
}

export function queryDecisions(db: Database, filter: AuditFilter, options: QueryOptions = {}): AuditRow[] {
  return [...iterateDecisions(db, filter, options)];
}

/** Decisions per time bucket and expert since `since` (expert null: none ran), counted by SQL, never loaded. */
export function expertCountsByBucket(db: Database, since: number, bucketMs: number): Array<{ bucket: number; expert: number | null; n: number }> {
  const { sql, params } = whereClause({ since, status: 'ok' });
  return db
    // better-sqlite3 binds large JS numbers as REAL: the cast keeps buckets whole.
    .prepare(`SELECT CAST((ts - @since) / @bucketMs AS INTEGER) AS bucket, expert, count(*) AS n FROM decisions ${sql} GROUP BY bucket, expert`)
    .all({ ...params, bucketMs }) as Array<{ bucket: number; expert: number | null; n: number }>;
}

/** Decided frames and anomalous ones (label index 1 of an anomaly package) per time bucket since `since`, counted by SQL. */
export function anomalyCountsByBucket(db: Database, since: number, bucketMs: number): Array<{ bucket: number; n: number; anomalous: number }> {
  const { sql, params } = whereClause({ since, status: 'ok' });
  return db
    .prepare(`SELECT CAST((ts - @since) / @bucketMs AS INTEGER) AS bucket, count(*) AS n, sum(label_index = 1) AS anomalous FROM decisions ${sql} GROUP BY bucket`)
    .all({ ...params, bucketMs }) as Array<{ bucket: number; n: number; anomalous: number }>;
}

export interface AuditEventRow {
  id: number;
  ts: number;
  kind: AuditEventKind;
  modelName: string | null;
  modelVersion: string | null;
  message: string;
  details: Record<string, unknown> | null;
}

/** Node events in order; `correlationId` keeps those of one request (an update's steps, a refused command). */
export function listEvents(db: Database, window: Pick<AuditFilter, 'since' | 'until'> = {}, kinds?: AuditEventKind[], correlationId?: string): AuditEventRow[] {
  const { sql, params } = whereClause({ since: window.since, until: window.until });
  const rows = db.prepare(`SELECT * FROM events ${sql} ORDER BY id`).all(params) as Array<{
    id: number;
    ts: number;
    kind: AuditEventKind;
    model_name: string | null;
    model_version: string | null;
    message: string;
    details: string | null;
  }>;
  return rows
    .filter((r) => kinds === undefined || kinds.includes(r.kind))
    .map((r) => ({
      id: r.id,
      ts: r.ts,
      kind: r.kind,
      modelName: r.model_name,
      modelVersion: r.model_version,
      message: r.message,
      details: r.details === null ? null : (JSON.parse(r.details) as Record<string, unknown>),
    }))
    .filter((e) => correlationId === undefined || e.details?.correlationId === correlationId || e.details?.id === correlationId);
}

export interface AuditStats {
  filter: AuditFilter;
  total: number;
  byStatus: Record<AuditStatus, number>;
  /** Decided (ok) rows per model version. */
  byModel: Array<{ name: string | null; version: string | null; count: number }>;
  /** Decided rows that ran an expert, and each expert's share of them. */
  routed: number;
  experts: Array<{ expert: number; count: number; share: number }>;
  earlyExitRate: number | null;
  /** Total decision time, nearest-rank percentiles over decided rows. */
  latencyUs: { p50: number; p90: number; p99: number; max: number } | null;
  /** Alarm events in the window, and the alarms still raised at its end. */
  alarms: { events: AuditEventRow[]; active: ActiveAlarmRow[] };
  /** Files found unreadable and moved aside (the audit log's, the outbox's), whatever the window: earlier rows are there. */
  recovered: AuditEventRow[];
  /** Anomaly packages' decisions (null when the window has none) and the operators' standing verdicts on them. */
  anomaly: AnomalyStats | null;
}

export interface AnomalyStats {
  decided: number;
  anomalous: number;
  rate: number;
  /**
   * Decisions with an operator's verdict (the latest per decision), and where the verdict and the model disagree:
   * frames flagged but judged good (false alarms), frames passed but judged a defect (misses).
   */
  reviewed: { good: number; defect: number; falseAlarms: number; misses: number };
}

export function auditStats(db: Database, filter: AuditFilter): AuditStats {
  const { sql, params } = whereClause(filter);
  const okSql = sql ? `${sql} AND status = 'ok'` : "WHERE status = 'ok'";

  const byStatus: Record<AuditStatus, number> = { ok: 0, rejected: 0, dropped: 0 };
  for (const r of db.prepare(`SELECT status, count(*) AS n FROM decisions ${sql} GROUP BY status`).all(params) as Array<{ status: AuditStatus; n: number }>) {
    byStatus[r.status] = r.n;
  }
  const total = byStatus.ok + byStatus.rejected + byStatus.dropped;

  const byModel = (
    db.prepare(`SELECT model_name, model_version, count(*) AS n FROM decisions ${okSql} GROUP BY model_name, model_version ORDER BY min(id)`).all(params) as Array<{
      model_name: string | null;
      model_version: string | null;
      n: number;
    }>
  ).map((r) => ({ name: r.model_name, version: r.model_version, count: r.n }));

  const expertCounts = db.prepare(`SELECT expert, count(*) AS n FROM decisions ${okSql} AND expert IS NOT NULL GROUP BY expert ORDER BY expert`).all(params) as Array<{
    expert: number;
    n: number;
  }>;
  const routed = expertCounts.reduce((a, r) => a + r.n, 0);
  const experts = expertCounts.map((r) => ({ expert: r.expert, count: r.n, share: r.n / routed }));

  const earlyExits = db.prepare(`SELECT count(*) FROM decisions ${okSql} AND early_exit = 1`).pluck().get(params) as number;

  return {
    filter,
    total,
    byStatus,
    byModel,
    routed,
    experts,
    earlyExitRate: byStatus.ok > 0 ? earlyExits / byStatus.ok : null,
    latencyUs: latency(db, okSql, params),
    alarms: alarmsIn(db, filter),
    recovered: listEvents(db, {}, ['db_recovered']),
    anomaly: anomalyStats(db, okSql, params),
  };
}

/** Anomalous is label index 1 of an anomaly package, whose rows carry the threshold the verdict was taken at. */
function anomalyStats(db: Database, okSql: string, params: Record<string, string | number>): AnomalyStats | null {
  const inWindow = `SELECT id, label_index FROM decisions ${okSql} AND threshold IS NOT NULL`;
  const counts = db.prepare(`SELECT count(*) AS decided, coalesce(sum(label_index = 1), 0) AS anomalous FROM (${inWindow})`).get(params) as {
    decided: number;
    anomalous: number;
  };
  if (counts.decided === 0) return null;
  const reviewed = db
    .prepare(
      `SELECT coalesce(sum(r.verdict = 'good'), 0) AS good, coalesce(sum(r.verdict = 'defect'), 0) AS defect,
              coalesce(sum(r.verdict = 'good' AND d.label_index = 1), 0) AS falseAlarms,
              coalesce(sum(r.verdict = 'defect' AND d.label_index = 0), 0) AS misses
       FROM (${inWindow}) d JOIN reviews r ON r.id = (SELECT max(id) FROM reviews WHERE decision_id = d.id)`,
    )
    .get(params) as AnomalyStats['reviewed'];
  return { ...counts, rate: counts.anomalous / counts.decided, reviewed };
}

/** Nearest-rank percentiles of total_us in one sorted pass. */
function latency(db: Database, okSql: string, params: Record<string, string | number>): AuditStats['latencyUs'] {
  const n = db.prepare(`SELECT count(total_us) FROM decisions ${okSql}`).pluck().get(params) as number;
  if (n === 0) return null;
  const rank = (p: number) => Math.max(1, Math.ceil((p / 100) * n));
  const picked = db
    .prepare(
      `SELECT rn, total_us FROM (SELECT total_us, row_number() OVER (ORDER BY total_us) AS rn FROM decisions ${okSql} AND total_us IS NOT NULL)
       WHERE rn IN (@r50, @r90, @r99, @rmax)`,
    )
    .all({ ...params, r50: rank(50), r90: rank(90), r99: rank(99), rmax: n }) as Array<{ rn: number; total_us: number }>;
  const at = (r: number) => picked.find((x) => x.rn === r)?.total_us ?? NaN;
  return { p50: at(rank(50)), p90: at(rank(90)), p99: at(rank(99)), max: at(n) };
}

/**
 * Which alarm an alarm event is about: a routing alarm by its kind (`details.alarm`), a condition alarm by its kind and
 * machine, so one machine's clearing does not clear another's.
 */
export function alarmName(e: AuditEventRow): string {
  const d = e.details ?? {};
  return d.machine === undefined ? String(d.alarm ?? d.kind) : machineAlarmName(String(d.kind), String(d.machine));
}

function alarmsIn(db: Database, filter: AuditFilter): AuditStats['alarms'] {
  // Active alarms depend on every alarm event up to the window's end, not only those inside it.
  const history = listEvents(db, { until: filter.until }, ['alarm_raised', 'alarm_cleared']);
  return { events: history.filter((e) => filter.since === undefined || e.ts >= filter.since), active: raisedIn(history) };
}

/** A raised alarm: its latest event, and when it was first raised since it was last cleared. */
export type ActiveAlarmRow = AuditEventRow & { since: number };

/** The alarms raised and not cleared (up to `until`): each alarm's latest event, when it is a raise. */
export function activeAlarms(db: Database, until?: number): ActiveAlarmRow[] {
  return raisedIn(listEvents(db, { until }, ['alarm_raised', 'alarm_cleared']));
}

function raisedIn(history: readonly AuditEventRow[]): ActiveAlarmRow[] {
  const latest = new Map<string, ActiveAlarmRow>();
  for (const e of history) {
    // A machine going from one fault to another stays raised since it first left normal, as the node counts it.
    const previous = latest.get(alarmName(e));
    const since = e.kind === 'alarm_raised' && previous?.kind === 'alarm_raised' ? previous.since : e.ts;
    latest.set(alarmName(e), { ...e, since });
  }
  return [...latest.values()].filter((e) => e.kind === 'alarm_raised');
}
