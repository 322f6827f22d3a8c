import { machineAlarmName } from '../maintenance/alarms';
import { describeAnomalyExit } from '../engine/tasks';
import { storageNotices } from './notices';
import type { NodeSnapshot } from './stats';
import type { WindowStats } from './windows';

const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
const ms = (us: number) => `${(us / 1000).toFixed(2)} ms`;

/** One terminal line, refreshed in place while the node runs. */
export function liveLine(s: NodeSnapshot): string {
  const lat = s.latencyUs ? `p50 ${ms(s.latencyUs.p50)} p99 ${ms(s.latencyUs.p99)}` : 'p50 - p99 -';
  return (
    `${s.framesPerSecond.toFixed(1)} frames/s | decided ${s.totals.decided} rejected ${s.totals.rejected} dropped ${s.totals.dropped} | ` +
    `since the current model: early exit ${pct(s.earlyExitRate)} | experts ${s.expertShares.map((x) => pct(x)).join(' ')} | ${lat} | outbox ${s.outboxDepth ?? '-'}${s.outboxDropped ? ` (${s.outboxDropped} dropped)` : ''}`
  );
}

/**
 * What `--once` and the demo print at the end. `accuracy` when the frames' true labels are known; with the demo's
 * samples, `testAccuracy` is the package's own figure on its whole test split, printed beside it.
 */
export function finalSummary(s: NodeSnapshot, accuracy?: { correct: number; scored: number; testAccuracy?: number | null }): string {
  const lines = [
    `model        ${s.model.name} ${s.model.version} on ${[...new Set(Object.values(s.providers))].join(', ')}`,
    `frames       ingested ${s.totals.ingested} = decided ${s.totals.decided} + rejected ${s.totals.rejected} + dropped ${s.totals.dropped} + pending ${s.totals.pending}`,
    ...s.sources.map(
      (src) =>
        `  ${src.name.padEnd(28)} ingested ${src.ingested}, decided ${src.decided}, rejected ${src.rejected}, dropped ${src.dropped}${counterText(src.counters)}` +
        (src.lastError ? `; last error ${src.lastError.code} at ${new Date(src.lastError.at).toISOString()}` : ''),
    ),
  ];
  if (accuracy) {
    lines.push(`accuracy     ${accuracy.scored === 0 ? 'n/a' : pct(accuracy.correct / accuracy.scored)} (${accuracy.correct} of ${accuracy.scored} labelled frames)`);
    if (accuracy.testAccuracy !== undefined) {
      lines.push(
        `             the samples were picked to exercise the early exit and every expert, not to measure accuracy;`,
        `             the package's test accuracy: ${accuracy.testAccuracy === null ? 'not in its report.json' : `${pct(accuracy.testAccuracy)} (its report.json)`}`,
      );
    }
  }
  lines.push(
    s.anomalyThreshold === undefined ? `threshold    ${s.settings.threshold} (early exit)` : `threshold    anomaly ${s.anomalyThreshold} (false-alarm rate ${pct(s.falseAlarmRate ?? null)}); ${describeAnomalyExit(s.settings.threshold)}`,
    ...windowLines(s.windows.sinceStart),
    ...windowLines(s.windows.sinceModel),
    `alarms       ${s.alarms.length + s.conditionAlarms.length === 0 ? 'none' : [...s.alarms.map((a) => `${a.kind} (${a.state})`), ...s.conditionAlarms.map((a) => machineAlarmName(a.kind, a.machine))].join(', ')}`,
    ...s.conditionAlarms.map((a) => `             ${a.message}`),
  );
  if (s.outboxDepth !== null) lines.push(`outbox       ${s.outboxDepth} waiting for the broker`);
  for (const n of storageNotices(s)) lines.push(`${n.part.padEnd(12)} ${n.text}`);
  for (const f of s.faults) lines.push(`fault        ${f.code}${f.source ? ` (${f.source})` : ''}: ${f.message}`);
  return lines.join('\n');
}

const COUNTER_NAMES = { restarts: 'decoder restarts', corrupt: 'corrupt packets concealed', windowResets: 'window resets', payloadsDropped: 'payloads dropped', alreadyDecided: 'decided before a stop (moved to done/)', alreadyRejected: 'rejected before a stop (moved to rejected/)' };

/** The source-specific counters that are not zero: ", decoder restarts 2, corrupt packets concealed 5". */
function counterText(counters: NodeSnapshot['sources'][number]['counters']): string {
  return Object.entries(counters ?? {})
    .filter(([, n]) => n !== 0)
    .map(([k, n]) => `, ${COUNTER_NAMES[k as keyof typeof COUNTER_NAMES]} ${n}`)
    .join('');
}

/** One labelled span: the same figures for "since start" and "since the current model", never mixed. */
function windowLines(w: WindowStats): string[] {
  const model = w.model ? ` (${w.model.name} ${w.model.version}, since ${w.since})` : ` (since ${w.since})`;
  return [
    `${w.label}${model}`,
    `  decided    ${w.decided}, early exit ${pct(w.earlyExitRate)}${w.anomalous === null ? '' : `, anomalous ${w.anomalous} (${pct(w.anomalous / w.decided)})`}`,
    `  experts    ${w.routed === 0 ? 'no decision ran an expert' : w.expertShares.map((x, i) => `#${i} ${pct(x)}`).join('  ')} (${w.routed} routed)`,
    `  latency    ${w.latencyUs ? `p50 ${ms(w.latencyUs.p50)}, p99 ${ms(w.latencyUs.p99)}` : 'n/a (no decision)'} (engine, per frame)`,
  ];
}
