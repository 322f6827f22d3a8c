import type { Database } from 'better-sqlite3';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { iterateDecisions, type AuditFilter } from './query';
import type { AuditRow } from './rows';

export type ExportFormat = 'csv' | 'jsonl';

const CSV_COLUMNS: Array<[string, (r: AuditRow) => unknown]> = [
  ['id', (r) => r.id],
  ['time', (r) => new Date(r.ts).toISOString()],
  ['received_at', (r) => (r.receivedAt === null ? null : new Date(r.receivedAt).toISOString())],
  ['frame_id', (r) => r.frameId],
  ['source', (r) => r.source],
  ['input_sha256', (r) => r.inputSha256],
  ['model_name', (r) => r.modelName],
  ['model_version', (r) => r.modelVersion],
  ['status', (r) => r.status],
  ['label', (r) => r.label],
  ['label_index', (r) => r.labelIndex],
  ['score', (r) => r.score],
  ['expert', (r) => r.expert],
  ['early_exit', (r) => r.earlyExit],
  ['base_confidence', (r) => r.baseConfidence],
  ['gate', (r) => r.gate?.map((p) => p.toFixed(6)).join(';')],
  ['macs', (r) => r.macs],
  ['trunk_us', (r) => r.timingsUs?.trunk],
  ['base_us', (r) => r.timingsUs?.base],
  ['gate_us', (r) => r.timingsUs?.gate],
  ['expert_us', (r) => r.timingsUs?.expert],
  ['total_us', (r) => r.timingsUs?.total],
  ['error_code', (r) => r.errorCode],
  ['error_message', (r) => r.errorMessage],
  ['window_offset', (r) => r.window?.offset],
  ['window_start', (r) => (r.window?.start != null ? new Date(r.window.start).toISOString() : null)],
  ['rpm', (r) => r.window?.rpm],
  ['load', (r) => r.window?.load],
  ['threshold', (r) => r.threshold],
];

/** RFC 4180: quote a field holding a comma, quote or line break; double the quotes inside. */
function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function formatRow(row: AuditRow, format: ExportFormat): string {
  return format === 'jsonl' ? `${JSON.stringify(row)}\n` : `${CSV_COLUMNS.map(([, get]) => csvField(get(row))).join(',')}\n`;
}

/**
 * Streams the matching decisions to `out`, oldest first, respecting backpressure. Returns rows written.
 * No statement stays open while `out` is waited for (rows are read in pages), so a consumer that stalls does not
 * hold the writer's checkpoints back; the rows are those in the log when the export starts.
 */
export async function exportDecisions(db: Database, filter: AuditFilter, format: ExportFormat, out: Writable): Promise<number> {
  if (format === 'csv') out.write(`${CSV_COLUMNS.map(([name]) => name).join(',')}\n`);
  let rows = 0;
  for (const row of iterateDecisions(db, filter)) {
    rows++;
    if (!out.write(formatRow(row, format))) await once(out, 'drain');
  }
  return rows;
}
