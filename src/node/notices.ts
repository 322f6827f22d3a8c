import { lostText } from '../transport/outbox-file';
import type { NodeSnapshot } from './stats';

/** Something an operator must know about the node's own files: what was not kept, moved aside or lost. */
export interface StorageNotice {
  part: 'audit' | 'outbox';
  text: string;
}

/** The final summary and the dashboard say the same: results held in memory, not queued or dropped, files moved aside. */
export function storageNotices(s: NodeSnapshot): StorageNotice[] {
  const notices: StorageNotice[] = [];
  const add = (part: StorageNotice['part'], text: string) => notices.push({ part, text });
  if (s.outboxUnavailable) add('outbox', `results wait in memory, a restart loses them (${s.outboxUnavailable.code}: ${s.outboxUnavailable.message})`);
  if (s.unpublished > 0) add('outbox', `${s.unpublished} decided frames could not be queued (they are in the audit log)`);
  if (s.outboxDropped) add('outbox', `${s.outboxDropped} results/rejections/health reports dropped (the outbox was full: mqtt.outbox.maxResults, the oldest first)`);
  if (s.outboxRecovered) {
    const r = s.outboxRecovered;
    add('outbox', `the file was unreadable at start (${r.code}), moved to ${r.movedTo}: ${lostText(r.resultsMayBeLost)}`);
  }
  if (s.auditRecovered) {
    const r = s.auditRecovered;
    add('audit', `the file was unreadable at start (${r.code}), moved to ${r.movedTo} at ${new Date(r.at).toISOString()}: the earlier decisions and events are there`);
  }
  if (s.unaudited > 0) add('audit', `${s.unaudited} frames not audited${s.auditUnavailable ? ` (${s.auditUnavailable.code}: ${s.auditUnavailable.message})` : ''}`);
  return notices;
}
