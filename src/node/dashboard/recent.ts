import { readFile } from 'node:fs/promises';
import { locateFrame, readScoreMap } from '../../audit/frame-store';
import type { AuditRow } from '../../audit/rows';
import type { Decision } from '../../engine/decision';
import type { AnomalyFields } from '../../engine/tasks';
import { heatmapPng } from '../../protocol/heatmap';
import type { SgmoeError } from '../../errors';
import { inputSha256, type Frame } from '../../ingest/frame';
import { sniffFormat } from '../../ingest/format';
import { pngOf, type FramePng } from '../../ingest/raw-png';
import { sha256Hex } from '../../model/integrity';
import type { EdgeNode } from '../edge-node';
import { HeldFrames } from './held-frames';
import { ThumbnailWorker, thumbnailOf } from './thumbnail';

interface EntryBase {
  /** Increases by one per entry, so a poller can ask for what came after the last one it saw. */
  seq: number;
  frameId: string;
  source: string;
  receivedAt: number;
  /** When the node settled the frame (ms since epoch). */
  at: number;
  /** PNG data URL, filled in shortly after the entry appears; null until then or when none could be made. */
  thumbnail: string | null;
  /** The sha256 of the bytes held for review (anomaly frames), so a verdict binds to what the operator saw. */
  inputSha256?: string;
}

type Outcome =
  | {
      status: 'decided';
      label: string;
      score: number;
      expert: number | null;
      earlyExit: boolean;
      baseConfidence: number;
      latencyUs: number;
      model: { name: string; version: string };
      /**
       * Anomaly packages: the verdict's numbers, and for an anomalous frame its heatmap (PNG data URL). On anomalies
       * seeded from the audit log, threshold is null for rows from before it was kept (schema 4) and heatmap when no
       * score map is kept with the frame (kept before maps were, evicted, or never kept).
       */
      anomaly: { score: number; threshold: number | null; verdict: 'good' | 'anomalous'; heatmap: string | null } | null;
    }
  | { status: 'rejected'; error: { code: string; message: string } };

export type RecentEntry = EntryBase & Outcome;

/**
 * The last `capacity` frames the node decided or rejected, from its events, each with a thumbnail made aside; the
 * bytes of the anomaly frames among them are held (within `heldBytes`) so an operator's verdict can keep its pixels.
 */
export class RecentDecisions {
  private readonly entries: RecentEntry[] = [];
  private seq = 0;
  private closed = false;
  private readonly thumbnails = new ThumbnailWorker();
  private readonly held: HeldFrames;
  private readonly onDecision = (frame: Frame, d: Decision) =>
    this.add(frame, {
      status: 'decided',
      label: d.label,
      score: d.score,
      expert: d.expert,
      earlyExit: d.earlyExit,
      baseConfidence: d.baseConfidence,
      latencyUs: d.timingsUs.total,
      model: d.model,
      anomaly: anomalyOf(d),
    });
  private readonly onRejected = (frame: Frame, error: SgmoeError) => this.add(frame, { status: 'rejected', error: { code: error.code, message: error.message } });

  constructor(
    private readonly node: EdgeNode,
    readonly capacity = 200,
    heldBytes?: number,
  ) {
    this.held = new HeldFrames(heldBytes);
    node.on('decision', this.onDecision);
    node.on('rejected', this.onRejected);
  }

  /** Entries after `afterSeq`, oldest first, at most the newest `limit` of them. */
  list(afterSeq = 0, limit = this.capacity): RecentEntry[] {
    const newer = this.entries.filter((e) => e.seq > afterSeq);
    return newer.slice(Math.max(0, newer.length - limit));
  }

  /** The held bytes with this sha256, while their frame is among the recent ones and within the budget. */
  bytesOf(inputSha256: string): Buffer | undefined {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const bytes = this.entries[i].inputSha256 === inputSha256 ? this.held.get(this.entries[i].seq) : undefined;
      if (bytes) return bytes;
    }
    return undefined;
  }

  /**
   * After a restart, the anomalies the audit log recorded (`rows`, newest first, at most `capacity`) come before the
   * live frames, so they can still be reviewed from the page: with the row's threshold, and the heatmap of the score
   * map the frame store keeps with the frame, read here so the first listing has them (once, as the dashboard
   * starts: 200 maps of 16x16, a texture package's, took 70-222 ms on a loaded 2-core machine on 2026-12-06). Their
   * kept bytes, taken only if they are the bytes the row names (sha256, as keepReviewedBytes checks), are read one
   * at a time aside: each then gets its thumbnail and is held for a verdict, as a live anomaly is.
   */
  seed(rows: readonly AuditRow[], framesDir: string): void {
    const seeded = rows
      .slice(0, this.capacity)
      .reverse()
      .map((r) => {
        const map = r.inputSha256 !== null ? readScoreMap(framesDir, r.inputSha256) : null;
        const entry: RecentEntry = {
          seq: ++this.seq,
          frameId: r.frameId,
          source: r.source ?? '',
          receivedAt: r.receivedAt ?? r.ts,
          at: r.ts,
          thumbnail: null,
          ...(r.inputSha256 !== null && { inputSha256: r.inputSha256 }),
          status: 'decided',
          label: r.label ?? '',
          score: r.score ?? Number.NaN,
          expert: r.expert,
          earlyExit: r.earlyExit ?? false,
          baseConfidence: r.baseConfidence ?? Number.NaN,
          latencyUs: r.timingsUs?.total ?? 0,
          model: { name: r.modelName ?? '', version: r.modelVersion ?? '' },
          anomaly: { score: r.score ?? Number.NaN, threshold: r.threshold, verdict: 'anomalous', heatmap: map && heatmapUrl(map.map, map.grid) },
        };
        return entry;
      });
    this.entries.unshift(...seeded);
    void this.keepSeeded(seeded, framesDir);
  }

  /** Oldest first, as the held bytes' budget gives up the oldest first. */
  private async keepSeeded(seeded: readonly RecentEntry[], framesDir: string): Promise<void> {
    for (const entry of seeded) {
      const file = entry.inputSha256 ? locateFrame(framesDir, entry.inputSha256) : null;
      const bytes = file ? await readFile(file).catch(() => undefined) : undefined;
      // Closed, or the live frames have pushed it out meanwhile: nothing to hold it for.
      if (this.closed || !this.entries.includes(entry)) continue;
      if (!bytes || !sniffFormat(bytes) || sha256Hex(bytes) !== entry.inputSha256) continue;
      this.held.hold(entry.seq, bytes);
      entry.thumbnail = await thumbnailOf(bytes).catch(() => null);
    }
  }

  close(): void {
    this.closed = true;
    this.node.off('decision', this.onDecision);
    this.node.off('rejected', this.onRejected);
    this.thumbnails.close();
    this.held.clear();
  }

  private add(frame: Frame, outcome: Outcome): void {
    const entry: RecentEntry = { seq: ++this.seq, frameId: frame.id, source: frame.source, receivedAt: frame.receivedAt, at: Date.now(), thumbnail: null, ...outcome };
    this.entries.push(entry);
    if (this.entries.length > this.capacity) this.held.release(this.entries.shift()!.seq);
    // Only an anomaly package's frames are reviewed into training images.
    const reviewed = outcome.status === 'decided' && outcome.anomaly !== null;
    // Only bytes in a format ingest accepts reach sharp (an SVG must never reach librsvg).
    if (frame.bytes && sniffFormat(frame.bytes)) {
      this.thumbnails.request(frame.bytes, (url) => (entry.thumbnail = url));
      if (reviewed) {
        entry.inputSha256 = inputSha256(frame);
        this.held.hold(entry.seq, frame.bytes);
      }
    } else if (frame.raw) {
      // A camera's decoded pixels: thumbnailed as they are, and held as the PNG the frame's audit row names (asked
      // for now, while the node announces the decision), so a verdict keeps and exports the picture shown.
      this.thumbnails.request(frame.raw, (url) => (entry.thumbnail = url));
      if (reviewed && this.held.maxBytes > 0) void pngOf(frame).then((png) => png && this.holdPng(entry, png));
    }
  }

  private holdPng(entry: RecentEntry, png: FramePng): void {
    entry.inputSha256 = png.sha256;
    // Closed, or pushed out by newer frames meanwhile: nothing to hold it for.
    if (!this.closed && this.entries.includes(entry)) this.held.hold(entry.seq, png.bytes);
  }
}

function anomalyOf(d: Decision): Extract<Outcome, { status: 'decided' }>['anomaly'] {
  const a = (d.extra as Partial<AnomalyFields> | undefined)?.anomaly;
  if (!a) return null;
  // Only anomalous frames get a heatmap: they are the few an operator looks at.
  const heatmap = a.verdict === 'anomalous' ? heatmapUrl(a.map, a.grid) : null;
  return { score: a.score, threshold: a.threshold, verdict: a.verdict, heatmap };
}

/** A score map's heatmap as the page shows it: a PNG data URL. */
function heatmapUrl(map: readonly number[], grid: readonly [number, number]): string {
  return `data:image/png;base64,${heatmapPng(map, grid).toString('base64')}`;
}
