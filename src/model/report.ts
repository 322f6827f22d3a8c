import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** What the factory's report.json beside a package's parts says. Not in the manifest's hashes: for people only. */
export interface FactoryReport {
  /** Built with the factory's --quick: a check that the factory runs, not a model for a line. */
  quick: boolean;
  /** The image factory's mixture accuracy on its test split, or null when the report does not say. */
  testAccuracy: number | null;
}

/** The package's factory report, or null when it has none that parses. */
export async function readFactoryReport(dir: string): Promise<FactoryReport | null> {
  let report: { mode?: unknown; quick?: unknown; models?: { sgmoe?: { accuracy?: unknown } } };
  try {
    report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as typeof report;
  } catch {
    return null;
  }
  const accuracy = report.models?.sgmoe?.accuracy;
  // The image factory says `mode: quick`, the signal factory `quick: true`; the anomaly factory has no quick mode.
  return { quick: report.mode === 'quick' || report.quick === true, testAccuracy: typeof accuracy === 'number' ? accuracy : null };
}

export const QUICK_BUILD_WARNING = 'a quick build (factory --quick): a check that the factory runs, not a model for a line; train it without --quick';
