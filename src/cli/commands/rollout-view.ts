import type { DeviceEntry } from '../../fleet/inventory';
import { WATCH_GRACE_MS, type DeviceOutcome, type DeviceProgress, type PublishReport, type RolloutPhase } from '../../fleet/publish';

/** What `sgmoe model publish` prints while a rollout runs and when it ends: lines for people, not JSON logs. */

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** Before anything is sent: how each device's deadline is made of `--timeout` and its own health watch. */
export function explainDeadlines(known: Array<Pick<DeviceEntry, 'device' | 'watchWindowMs'>>, timeoutMs: number): string[] {
  return known.map((d) =>
    d.watchWindowMs === null
      ? `${d.device}: ${secs(timeoutMs)} (--timeout) to report done; its status does not announce a health watch`
      : `${d.device}: ${secs(timeoutMs)} (--timeout) to reach its health watch, then ${secs(d.watchWindowMs)} of watch (fleet.watch.windowMs)` +
        ` + ${secs(WATCH_GRACE_MS)} to report done${d.watchWindowMs > timeoutMs ? ' (the watch is longer than --timeout: it is waited for, not cut short)' : ''}`,
  );
}

export function formatProgress(p: DeviceProgress): string {
  const watch = p.watchMs === undefined ? '' : ` (health watch ${secs(p.watchMs)})`;
  return `[${secs(p.elapsedMs).padStart(8)}] ${p.device.padEnd(16)} ${p.step}${watch}: ${p.message}`;
}

export function formatPhase(p: RolloutPhase): string {
  switch (p.phase) {
    case 'canary': {
      const watch = p.watchMs === null ? 'their own health watch' : `a health watch of ${secs(p.watchMs)} on the device`;
      return `canary phase: ${p.devices.join(', ')} update first; each reports done after ${watch}, then publish watches them for --window ${secs(p.windowMs)} before the others`;
    }
    case 'canary-window':
      return `canaries done: watching ${p.devices.join(', ')} for ${secs(p.windowMs)} (online, no critical alarm, health reports)`;
    case 'rollout':
      return `updating ${p.devices.join(', ')}`;
    case 'stopped':
      return `${p.reason}: ${p.devices.join(', ') || 'no other device'} not updated`;
  }
}

/** A line for the devices still running, for the periodic "still going" print: the time at this step, and since the command. */
export function formatRunning(running: Array<{ device: string; step: string | null; stepMs: number; elapsedMs: number }>): string {
  return `  … ${running.map((r) => `${r.device} ${r.step ?? 'sent'} for ${secs(r.stepMs)} (command sent ${secs(r.elapsedMs)} ago)`).join('; ')}`;
}

/** The final table: device, outcome, version, duration, error code and reason. */
export function formatOutcomes(report: PublishReport): string {
  const all: DeviceOutcome[] = [...(report.canary?.devices ?? []), ...report.devices];
  const canaries = new Set(report.canary?.devices.map((d) => d.device));
  const rows = all.map((o) => [
    canaries.has(o.device) ? `${o.device} (canary)` : o.device,
    o.outcome,
    o.version ?? '-',
    o.outcome === 'skipped' ? '-' : secs(o.durationMs),
    o.code ?? '-',
    o.reason ?? (o.outcome === 'done' ? '' : '-'),
  ]);
  const header = ['device', 'outcome', 'version', 'duration', 'code', 'reason'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
