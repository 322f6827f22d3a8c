import type { Command } from 'commander';
import { createWriteStream, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { finished } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import { z } from 'zod';
import { SgmoeError, errorMessage } from '../../errors';
import { validate } from '../../validate';
import { list } from '../options';
import {
  AUDIT_EVENT_KINDS,
  AUDIT_STATUSES,
  auditStats,
  countDecisions,
  exportDecisions,
  iterateDecisions,
  listEvents,
  openAuditDbReadOnly,
  type AuditFilter,
  type AuditStats,
  type AnomalyStats,
  DEFAULT_DEFECT_KIND,
  alarmName,
  contradicted,
  exportReviewedDataset,
  framesDirOf,
  keepReviewedBytes,
  openReviewDb,
  recordReview,
} from '../../audit';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** An ISO time, or a span back from now such as `90s`, `15m`, `1h`, `7d`, `2w`; ms since epoch. */
export function parseTime(text: string, now = Date.now()): number {
  const relative = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(text.trim());
  if (relative) return now - Number(relative[1]) * UNIT_MS[relative[2]];
  const t = Date.parse(text);
  if (Number.isNaN(t)) {
    throw new SgmoeError('E_USAGE', `expected an ISO time or a span like 15m, 1h, 7d, found "${text}"`);
  }
  return t;
}

const filterOptions = z.object({
  db: z.string().min(1),
  since: z.string().optional(),
  until: z.string().optional(),
  label: z.string().optional(),
  expert: z
    .string()
    .regex(/^(\d+|none)$/, 'an expert index or "none"')
    .transform((e) => (e === 'none' ? ('none' as const) : Number(e)))
    .optional(),
  status: z.enum(AUDIT_STATUSES as [string, ...string[]]).optional(),
  modelVersion: z.string().optional(),
});

function parseOptions<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  return validate(schema, raw, { code: 'E_USAGE', where: 'a command line option', prefix: '--' });
}

const eventOptions = z.object({
  db: z.string(),
  since: z.string().optional(),
  until: z.string().optional(),
  kind: z.array(z.enum(AUDIT_EVENT_KINDS)).optional(),
  id: z.string().optional(),
});

function toFilter(o: z.infer<typeof filterOptions>, now: number): AuditFilter {
  return {
    since: o.since === undefined ? undefined : parseTime(o.since, now),
    until: o.until === undefined ? undefined : parseTime(o.until, now),
    label: o.label,
    expert: o.expert,
    status: o.status as AuditFilter['status'],
    modelVersion: o.modelVersion,
  };
}

function withFilterOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--db <file>', 'audit database (SQLite)')
    .option('--since <time>', 'from this time: ISO, or a span back from now (15m, 1h, 7d)')
    .option('--until <time>', 'up to this time (exclusive): ISO or a span back from now')
    .option('--label <label>', 'only decisions with this label')
    .option('--expert <n|none>', 'only decisions by this expert, or "none" for those without one')
    .option('--status <status>', `only this status: ${AUDIT_STATUSES.join(' | ')}`)
    .option('--model-version <version>', 'only this model version');
}

/** `sgmoe audit stats|query|export`: read an audit database. `out` is where results go (stdout). */
export function register(program: Command, out: Writable = process.stdout): void {
  const audit = program.command('audit').description('read the audit log (stats, query, events, export) and record operators\' verdicts (review)');

  withFilterOptions(audit.command('stats').description('counts, expert shares, early-exit rate, latency, alarms'))
    .option('--json', 'print the figures as one JSON object')
    .action((raw: Record<string, unknown>) => {
      const o = parseOptions(filterOptions.extend({ json: z.boolean().optional() }), raw);
      const db = openAuditDbReadOnly(o.db);
      try {
        const stats = auditStats(db, toFilter(o, Date.now()));
        out.write(o.json ? `${JSON.stringify(stats)}\n` : formatStats(o.db, stats));
      } finally {
        db.close();
      }
    });

  withFilterOptions(audit.command('query').description('matching decisions, one JSON object per line'))
    .option('--limit <n|all>', 'at most n rows, or all of them', '100')
    .option('--newest-first', 'newest rows first')
    .action((raw: Record<string, unknown>) => {
      const limit = z
        .string()
        .regex(/^([1-9]\d*|all)$/, 'a positive number of rows or "all"')
        .transform((l) => (l === 'all' ? undefined : Number(l)));
      const o = parseOptions(filterOptions.extend({ limit, newestFirst: z.boolean().optional() }), raw);
      const db = openAuditDbReadOnly(o.db);
      try {
        const filter = toFilter(o, Date.now());
        let written = 0;
        for (const row of iterateDecisions(db, filter, { limit: o.limit, order: o.newestFirst ? 'desc' : 'asc' })) {
          out.write(`${JSON.stringify(row)}\n`);
          written++;
        }
        // Cut at the limit: said where a reader of the rows (| wc -l) does not count it as one.
        const matching = written === o.limit ? countDecisions(db, filter) : written;
        if (matching > written) process.stderr.write(`${written} of ${matching} matching rows (--limit ${o.limit}; --limit all for every row)\n`);
      } finally {
        db.close();
      }
    });

  audit
    .command('events')
    .description('node events (start/stop, model loads, updates, rollbacks, alarms, config changes), one JSON object per line')
    .requiredOption('--db <file>', 'audit database (SQLite)')
    .option('--since <time>', 'from this time: ISO, or a span back from now (15m, 1h, 7d)')
    .option('--until <time>', 'up to this time (exclusive): ISO or a span back from now')
    .option('--kind <kind>', 'only events of this kind (repeat or comma-separate)', list)
    .option('--id <correlationId>', 'only the events of this request (an update\'s steps, a refused command)')
    .action((raw: Record<string, unknown>) => {
      const o = parseOptions(eventOptions, raw);
      const now = Date.now();
      const db = openAuditDbReadOnly(o.db);
      try {
        const window = { since: o.since === undefined ? undefined : parseTime(o.since, now), until: o.until === undefined ? undefined : parseTime(o.until, now) };
        for (const event of listEvents(db, window, o.kind, o.id)) out.write(`${JSON.stringify(event)}\n`);
      } finally {
        db.close();
      }
    });

  audit
    .command('review')
    .description('record an operator\'s verdict on a decided frame: good or defect (the anomaly feedback loop)')
    .requiredOption('--db <file>', 'audit database (SQLite)')
    .requiredOption('--frame <id>', 'the frame id (its latest decision is judged)')
    .requiredOption('--verdict <verdict>', 'good | defect')
    .option('--kind <kind>', `defect kind, the folder it is exported to (default ${DEFAULT_DEFECT_KIND})`)
    .option('--by <name>', 'who judged (default: the user running the command)')
    .option('--frames <dir>', 'where the node keeps frame bytes (default: frames/ beside the database)')
    .option('--file <path>', "the frame's image file (say from the hot folder's done/), kept for export when the node kept no bytes of it; only if its sha256 is the audit row's")
    .action((raw: Record<string, unknown>) => {
      const o = parseOptions(z.object({ db: z.string().min(1), frame: z.string(), verdict: z.string(), kind: z.string().optional(), by: z.string().optional(), frames: z.string().optional(), file: z.string().optional() }), raw);
      const framesDir = o.frames ?? framesDirOf(o.db);
      const file = o.file === undefined ? undefined : readReviewFile(o.file);
      const db = openReviewDb(o.db);
      try {
        const review = recordReview(db, { frameId: o.frame, verdict: o.verdict, kind: o.kind, reviewer: o.by ?? userInfo().username }, 'cli', { framesDir });
        const bytes = review.bytes ?? (file && review.inputSha256 ? keepReviewedBytes(framesDir, review.inputSha256, file) : null);
        out.write(`${JSON.stringify({ ...review, bytes })}\n`);
        for (const other of contradicted(db, review)) {
          process.stderr.write(`the same image is ${other.frameId}, judged ${other.verdict === 'good' ? 'good' : other.kind} by ${other.reviewer}: the export leaves both out until they agree\n`);
        }
        if (bytes === null && file) {
          process.stderr.write(`recorded without pixels: ${o.file} is not the frame the audit log decided (its sha256 differs), so the export lists it as missing\n`);
        } else if (bytes === null) {
          process.stderr.write(`recorded without pixels: no bytes of this frame are kept (audit.frames.keep; the dashboard holds its recent frames' bytes; --file gives them), so the export lists it as missing\n`);
        }
      } finally {
        db.close();
      }
    });

  withFilterOptions(audit.command('export').description('matching decisions as CSV or JSONL, or the reviewed frames as a factory data folder'))
    .option('--format <format>', 'csv | jsonl', 'csv')
    .option('--out <file>', 'write to this file instead of stdout')
    .option('--reviewed', 'only frames an operator judged (with --as-dataset)')
    .option('--as-dataset <dir>', 'write the reviewed frames as an anomaly factory data folder (train/good, test/<kind>)')
    .option('--holdout <share>', 'with --as-dataset: this share of good frames goes to test/good (default 0)')
    .option('--frames <dir>', 'where the node keeps frame bytes (default: frames/ beside the database)')
    .action(async (raw: Record<string, unknown>) => {
      if (raw.asDataset !== undefined || raw.reviewed !== undefined) return exportDataset(raw, out);
      const o = parseOptions(filterOptions.extend({ format: z.enum(['csv', 'jsonl']), out: z.string().optional() }), raw);
      const db = openAuditDbReadOnly(o.db);
      const target = o.out === undefined ? out : createWriteStream(o.out);
      try {
        await exportDecisions(db, toFilter(o, Date.now()), o.format, target);
      } finally {
        db.close();
        if (target !== out) {
          target.end();
          await finished(target);
        }
      }
    });
}

/** The --file of a review, read before anything is recorded: a wrong path records nothing. */
function readReviewFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new SgmoeError('E_FILE_UNREADABLE', `--file: cannot read the frame's image ${path}: ${errorMessage(err)}`, { path }, { cause: err });
  }
}

const datasetOptions = z
  .object({
    db: z.string().min(1),
    reviewed: z.literal(true, 'needed with --as-dataset: the data set holds reviewed frames only'),
    asDataset: z.string().min(1, 'a folder to write the data set in'),
    holdout: z.coerce.number().min(0).max(0.9).optional(),
    frames: z.string().optional(),
    format: z.string().optional(),
  })
  .strict();

/** `audit export --reviewed --as-dataset DIR`: the standing verdicts as the anomaly factory's data folder. */
function exportDataset(raw: Record<string, unknown>, out: Writable): void {
  const o = parseOptions(datasetOptions, raw);
  const db = openAuditDbReadOnly(o.db);
  try {
    const result = exportReviewedDataset(db, o.frames ?? framesDirOf(o.db), o.asDataset, { holdout: o.holdout });
    out.write(`${JSON.stringify(result)}\n`);
    if (result.missing.length === 0 && result.conflicts.length === 0 && Object.keys(result.written).length === 0) {
      process.stderr.write(`no reviewed frames: ${o.asDataset} holds only reviews.json (verdicts come from the dashboard or \`sgmoe audit review\`)\n`);
    }
    if (result.missing.length > 0) {
      const reasons = [...new Set(result.missing.map((m) => m.reason))].join(', ');
      process.stderr.write(`${result.missing.length} reviewed frame(s) not exported: ${reasons} (listed in ${o.asDataset}/reviews.json)\n`);
    }
    for (const c of result.conflicts) {
      const verdicts = c.reviews.map((r) => `${r.frameId}: ${r.verdict === 'good' ? 'good' : r.kind} by ${r.reviewer}`).join('; ');
      process.stderr.write(`not exported, identical images judged differently (review them again to agree): ${verdicts}\n`);
    }
  } finally {
    db.close();
  }
}

function anomalyLine(a: AnomalyStats, pct: (x: number | null) => string): string {
  const r = a.reviewed;
  return `anomalies: ${a.anomalous} of ${a.decided} (${pct(a.rate)}); reviewed ${r.good + r.defect} (good ${r.good}, defect ${r.defect}), false alarms ${r.falseAlarms}, misses ${r.misses}`;
}

function formatStats(file: string, s: AuditStats): string {
  const iso = (t: number) => new Date(t).toISOString();
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
  const lines = [
    `audit ${file}, ${s.filter.since === undefined && s.filter.until === undefined ? 'every row' : `${s.filter.since === undefined ? 'the first row' : iso(s.filter.since)} to ${s.filter.until === undefined ? 'now' : iso(s.filter.until)}`}`,
    `decisions: ${s.total} (ok ${s.byStatus.ok}, rejected ${s.byStatus.rejected}, dropped ${s.byStatus.dropped})`,
    `models: ${s.byModel.map((m) => `${m.name}@${m.version} ${m.count}`).join(', ') || 'none'}`,
    `early-exit rate: ${pct(s.earlyExitRate)}`,
    `experts (${s.routed} routed): ${s.experts.map((e) => `#${e.expert} ${e.count} (${pct(e.share)})`).join(', ') || 'none'}`,
    `latency total_us: ${s.latencyUs ? `p50 ${s.latencyUs.p50}, p90 ${s.latencyUs.p90}, p99 ${s.latencyUs.p99}, max ${s.latencyUs.max}` : 'n/a'}`,
    `alarms: ${s.alarms.events.length} events in window; active: ${s.alarms.active.map((a) => `${alarmName(a)} since ${iso(a.since)}`).join(', ') || 'none'}`,
    ...(s.anomaly ? [anomalyLine(s.anomaly, pct)] : []),
    ...s.recovered.map((e) => `recovered ${iso(e.ts)}: ${e.message}`),
  ];
  return `${lines.join('\n')}\n`;
}
