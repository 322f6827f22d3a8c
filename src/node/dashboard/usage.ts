import type { Database } from 'better-sqlite3';
import { anomalyCountsByBucket, expertCountsByBucket } from '../../audit/query';
import type { RecentEntry } from './recent';

/** Time buckets ending with the current one: `count` buckets of `bucketMs`, the first starting at `from`. */
export interface UsageWindow {
  from: number;
  bucketMs: number;
  count: number;
}

/** Decisions per bucket: how many ran each expert, and how many ran none (early exit or base-only). */
export interface ExpertUsage extends UsageWindow {
  /** Where the counts come from: the audit log (all decisions) or the recent ring buffer (the last few hundred). */
  origin: 'audit' | 'recent';
  buckets: Array<{ t: number; noExpert: number; experts: number[] }>;
}

/** Buckets aligned to multiples of `bucketMs`, so they stay the same from one poll to the next. */
export function usageWindow(windowMs: number, count: number, now = Date.now()): UsageWindow {
  const bucketMs = Math.max(1, Math.ceil(windowMs / count));
  return { from: (Math.floor(now / bucketMs) - count + 1) * bucketMs, bucketMs, count };
}

/** Counts per bucket from the audit log (all decisions in the window). */
export function usageFromAudit(db: Database, window: UsageWindow, experts: number): ExpertUsage {
  return tally('audit', window, experts, expertCountsByBucket(db, window.from, window.bucketMs));
}

export function usageFromRecent(entries: RecentEntry[], window: UsageWindow, experts: number): ExpertUsage {
  const rows = entries.flatMap((e) =>
    e.status === 'decided' && e.at >= window.from ? [{ bucket: Math.floor((e.at - window.from) / window.bucketMs), expert: e.expert, n: 1 }] : [],
  );
  return tally('recent', window, experts, rows);
}

function tally(origin: ExpertUsage['origin'], window: UsageWindow, experts: number, rows: Array<{ bucket: number; expert: number | null; n: number }>): ExpertUsage {
  // A model swap can change the number of experts: size the counts to whatever the rows hold.
  const width = Math.max(experts, ...rows.map((r) => (r.expert ?? -1) + 1));
  const buckets = Array.from({ length: window.count }, (_, i) => ({ t: window.from + i * window.bucketMs, noExpert: 0, experts: new Array<number>(width).fill(0) }));
  for (const { bucket, expert, n } of rows) {
    const b = buckets[bucket];
    if (!b) continue; // a clock step put it past the window
    if (expert === null) b.noExpert += n;
    else b.experts[expert] += n;
  }
  return { ...window, origin, buckets };
}

/** Decided and anomalous frames per bucket: the anomaly rate over time. */
export interface AnomalyRate extends UsageWindow {
  origin: ExpertUsage['origin'];
  buckets: Array<{ t: number; decided: number; anomalous: number }>;
}

export function anomalyRateFromAudit(db: Database, window: UsageWindow): AnomalyRate {
  return rateTally('audit', window, anomalyCountsByBucket(db, window.from, window.bucketMs));
}

export function anomalyRateFromRecent(entries: RecentEntry[], window: UsageWindow): AnomalyRate {
  const rows = entries.flatMap((e) =>
    e.status === 'decided' && e.at >= window.from
      ? [{ bucket: Math.floor((e.at - window.from) / window.bucketMs), n: 1, anomalous: e.anomaly?.verdict === 'anomalous' ? 1 : 0 }]
      : [],
  );
  return rateTally('recent', window, rows);
}

function rateTally(origin: AnomalyRate['origin'], window: UsageWindow, rows: Array<{ bucket: number; n: number; anomalous: number }>): AnomalyRate {
  const buckets = Array.from({ length: window.count }, (_, i) => ({ t: window.from + i * window.bucketMs, decided: 0, anomalous: 0 }));
  for (const { bucket, n, anomalous } of rows) {
    const b = buckets[bucket];
    if (!b) continue;
    b.decided += n;
    b.anomalous += anomalous;
  }
  return { ...window, origin, buckets };
}
