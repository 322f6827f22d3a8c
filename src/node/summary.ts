import { lostText } from '../transport/outbox-file';
import type { NodeSnapshot } from './stats';

const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
const ms = (us: number) => `${(us / 1000).toFixed(2)} ms`;

/** One terminal line, refreshed in place while the node runs. */
export function liveLine(s: NodeSnapshot): string {
  const lat = s.latencyUs ? `p50 ${ms(s.latencyUs.p50)} p99 ${ms(s.latencyUs.p99)}` : 'p50 - p99 -';
  return (
    `${s.framesPerSecond.toFixed(1)} frames/s | decided ${s.totals.decided} rejected ${s.totals.rejected} dropped ${s.totals.dropped} | ` +
    `early exit ${pct(s.earlyExitRate)} | experts ${s.expertShares.map((x) => pct(x)).join(' ')} | ${lat} | outbox ${s.outboxDepth ?? '-'}`
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
    ...s.sources.map((src) => `  ${src.name.padEnd(28)} ingested ${src.ingested}, decided ${src.decided}, rejected ${src.rejected}, dropped ${src.dropped}${counterText(src.counters)}`),
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
    `early exit   ${pct(s.earlyExitRate)} (threshold ${s.settings.threshold})`,
    `experts      ${s.expertShares.map((x, i) => `#${i} ${pct(x)}`).join('  ')}`,
    `latency      ${s.latencyUs ? `p50 ${ms(s.latencyUs.p50)}, p99 ${ms(s.latencyUs.p99)}` : 'n/a'} (engine, per frame)`,
    `alarms       ${s.alarms.length === 0 ? 'none' : s.alarms.map((a) => `${a.kind} (${a.state})`).join(', ')}`,
  );
  if (s.outboxDepth !== null) {
    const memory = s.outboxUnavailable ? ` in memory, a restart loses them (${s.outboxUnavailable.code}: ${s.outboxUnavailable.message})` : '';
    lines.push(`outbox       ${s.outboxDepth} waiting for the broker${memory}${s.unpublished ? `, ${s.unpublished} could not be queued` : ''}`);
  }
  if (s.outboxRecovered) {
    const r = s.outboxRecovered;
    lines.push(`outbox       the file was unreadable at start (${r.code}), moved to ${r.movedTo}: ${lostText(r.resultsMayBeLost)}`);
  }
  if (s.unaudited > 0) lines.push(`audit        ${s.unaudited} frames not audited${s.auditUnavailable ? ` (${s.auditUnavailable.code}: ${s.auditUnavailable.message})` : ''}`);
  for (const f of s.faults) lines.push(`fault        ${f.code}${f.source ? ` (${f.source})` : ''}: ${f.message}`);
  return lines.join('\n');
}

const COUNTER_NAMES = { restarts: 'decoder restarts', corrupt: 'corrupt packets concealed', windowResets: 'window resets', payloadsDropped: 'payloads dropped' };

/** The source-specific counters that are not zero: ", decoder restarts 2, corrupt packets concealed 5". */
function counterText(counters: NodeSnapshot['sources'][number]['counters']): string {
  return Object.entries(counters ?? {})
    .filter(([, n]) => n !== 0)
    .map(([k, n]) => `, ${COUNTER_NAMES[k as keyof typeof COUNTER_NAMES]} ${n}`)
    .join('');
}
