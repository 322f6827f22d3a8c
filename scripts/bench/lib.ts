/**
 * Shared by every benchmark under scripts/bench/: the machine and versions header, a timer, and a
 * side-by-side table with ratios. Benchmarks compare in one run, on one machine; they never assert.
 */
import { readFileSync } from 'node:fs';
import { cpus, totalmem, platform, arch, release } from 'node:os';
import { percentile } from '../../src/percentile';

export { percentile };

export function printHeader(title: string, extra: Record<string, string> = {}): void {
  const cpu = cpus();
  const versions: Record<string, string> = {
    node: process.version,
    'onnxruntime-node': safeVersion('onnxruntime-node'),
    sharp: safeVersion('sharp'),
    'better-sqlite3': safeVersion('better-sqlite3'),
    mqtt: safeVersion('mqtt'),
    ...extra,
  };
  console.log(`# ${title}`);
  console.log(`machine: ${cpu.length} x ${cpu[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${platform()} ${arch()} ${release()}`);
  console.log(`versions: ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`date: ${new Date().toISOString()}`);
}

function safeVersion(pkg: string): string {
  try {
    return (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return 'n/a';
  }
}

/** Runs `fn` `iterations` times after `warmup` runs; returns each run's duration in microseconds. */
export async function timeRuns(fn: () => unknown, iterations: number, warmup = Math.ceil(iterations / 10)): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return out;
}


export function median(values: number[]): number {
  return percentile(values, 50);
}

export interface Row {
  name: string;
  /** The figure compared (lower is better unless `higherIsBetter`). */
  value: number;
  unit: string;
  note?: string;
}

/** Prints rows side by side with each one's ratio to the reference row (the floor or the baseline). */
export function printComparison(title: string, rows: Row[], reference: string, higherIsBetter = false): void {
  const ref = rows.find((r) => r.name === reference);
  console.log(`\n## ${title}`);
  console.log(`| case | ${higherIsBetter ? 'value (higher is better)' : 'value (lower is better)'} | ratio to ${reference} | note |`);
  console.log('| --- | ---: | ---: | --- |');
  for (const r of rows) {
    const ratio = ref && ref.value !== 0 ? (r.value / ref.value).toFixed(3) : 'n/a';
    console.log(`| ${r.name} | ${format(r.value)} ${r.unit} | ${ratio} | ${r.note ?? ''} |`);
  }
}

function format(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
}
