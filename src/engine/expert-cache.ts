/** A resident expert: anything that can be released when it falls out of the budget. */
export interface Releasable {
  release(): Promise<void>;
}

export interface ExpertCacheCounters {
  loads: number;
  evictions: number;
  hits: number;
  resident: number[];
  residentBytes: number;
}

export interface ExpertCacheOptions<S extends Releasable> {
  load(index: number): Promise<S>;
  /** Estimated memory of expert `index` once loaded (the engine uses the ONNX file size: weights dominate). */
  sizeOf(index: number): number;
  /** Undefined: no limit. The expert in use always stays, even when it alone exceeds the budget. */
  budgetBytes?: number;
}

/**
 * Expert sessions loaded on first use and kept under a memory budget by evicting the least recently used.
 * Callers must not run two `get`s concurrently with work on an evicted session; the engine serialises inference.
 */
export class ExpertCache<S extends Releasable> {
  /** Map order is recency order: the first entry is the least recently used. */
  private readonly resident = new Map<number, S>();
  private loads = 0;
  private evictions = 0;
  private hits = 0;

  constructor(private readonly options: ExpertCacheOptions<S>) {}

  async get(index: number): Promise<S> {
    const cached = this.resident.get(index);
    if (cached) {
      this.hits++;
      this.resident.delete(index);
      this.resident.set(index, cached);
      return cached;
    }
    await this.makeRoomFor(index);
    const session = await this.options.load(index);
    this.loads++;
    this.resident.set(index, session);
    return session;
  }

  counters(): ExpertCacheCounters {
    return {
      loads: this.loads,
      evictions: this.evictions,
      hits: this.hits,
      resident: [...this.resident.keys()],
      residentBytes: this.residentBytes(),
    };
  }

  async dispose(): Promise<void> {
    const sessions = [...this.resident.values()];
    this.resident.clear();
    await Promise.all(sessions.map((s) => s.release()));
  }

  private residentBytes(): number {
    let total = 0;
    for (const index of this.resident.keys()) total += this.options.sizeOf(index);
    return total;
  }

  private async makeRoomFor(index: number): Promise<void> {
    const budget = this.options.budgetBytes;
    if (budget === undefined) return;
    const needed = this.options.sizeOf(index);
    for (const [victim, session] of this.resident) {
      if (this.residentBytes() + needed <= budget) break;
      this.resident.delete(victim);
      this.evictions++;
      await session.release();
    }
  }
}
