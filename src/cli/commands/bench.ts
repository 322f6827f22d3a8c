import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { SgmoeError } from '../../errors';

const ROOT = join(__dirname, '..', '..', '..');
const BENCH_DIR = join(ROOT, 'scripts', 'bench');
const BENCHES = ['engine', 'ingest', 'audit', 'transport', 'pipeline', 'signal', 'anomaly'] as const;

/**
 * `sgmoe bench NAME`: the benchmarks of scripts/bench/ (TypeScript, run through tsx from a source checkout:
 * they use the sources, the test helpers and the dev dependencies, none of which an installed package has).
 * Each compares side by side in one run and prints ratios.
 */
export function register(program: Command): void {
  program
    .command('bench')
    .description(`run a benchmark of scripts/bench/ (${BENCHES.join(', ')}); arguments after the name go to it`)
    .argument('<name>', BENCHES.join(' | '))
    .argument('[args...]', 'passed to the benchmark')
    .allowUnknownOption()
    .action((name: string, args: string[]) => {
      const script = join(BENCH_DIR, `${name}.ts`);
      if (!(BENCHES as readonly string[]).includes(name) || !existsSync(script)) {
        throw new SgmoeError('E_USAGE', `no benchmark "${name}": expected one of ${BENCHES.join(', ')}`);
      }
      if (!existsSync(join(ROOT, 'src', 'index.ts')) || !existsSync(join(ROOT, 'node_modules', 'tsx'))) {
        throw new SgmoeError(
          'E_BENCH_NEEDS_SOURCE',
          `the benchmarks run from a source checkout of sgmoe-edge, not from an installed package (${ROOT} has no src/ or no dev dependencies): clone the repository, run npm ci there, then npx sgmoe bench ${name}`,
        );
      }
      const run = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], { stdio: 'inherit' });
      process.exitCode = run.status ?? 1;
    });
}
