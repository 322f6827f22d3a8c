import sharp from 'sharp';

export interface SharpSettings {
  /** libvips threads per image (default 1). */
  concurrency?: number;
  /** libvips operation cache (default off). */
  cache?: boolean;
}

/**
 * sharp's settings are process-wide, so the program (the node, the CLI) applies them once at start; the
 * Preprocessor never changes them behind its user's back. Defaults for an edge device:
 * - concurrency 1: frames are small and many; parallelism comes from several frames at once on the libuv
 *   pool, and more libvips threads per image would compete with ONNX Runtime for the same few cores;
 * - cache off: the cache keys on the input, and every frame is a new input, so it never hits but would hold
 *   up to 50 MB of memory. `scripts/bench/ingest.ts` measures both against sharp's defaults.
 */
export function configureSharp({ concurrency = 1, cache = false }: SharpSettings = {}): void {
  sharp.concurrency(concurrency);
  sharp.cache(cache);
}
