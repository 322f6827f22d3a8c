import type { Command } from 'commander';
import { join } from 'node:path';
import { runDoctor } from '../../engine/doctor';
import { loadPackage } from '../../model/package';
import { SDK_VERSION } from '../../version';

const BUNDLED_MODEL = join(__dirname, '..', '..', '..', 'models', 'fashion-sgmoe');

export function register(program: Command): void {
  program
    .command('doctor')
    .description('show the execution providers this onnxruntime-node build can run here, the device profile that fits, and what GPU execution lacks')
    .option('--model <dir>', 'package whose gate is used to probe providers', BUNDLED_MODEL)
    .option('--json', 'print the report as JSON')
    .action(async (opts: { model: string; json?: boolean }) => {
      const pkg = await loadPackage(opts.model, { verifyHashes: false });
      const report = await runDoctor(pkg.gate.path);
      if (opts.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        return;
      }
      const { host } = report;
      const lines = [
        `host          ${host.arch}${host.boardModel ? `, ${host.boardModel}` : ''}, NVIDIA GPU: ${host.nvidiaGpu ? 'yes' : 'no'}`,
        `sgmoe-edge    ${SDK_VERSION}`,
        `onnxruntime   ${report.onnxruntime}`,
        'providers',
        ...report.providers.map((p) => `  ${p.provider.padEnd(9)} ${p.works ? 'works' : 'unavailable'}${p.reason ? ` (${p.reason.split('\n')[0]})` : ''}`),
        `profile       ${report.profile ? `${report.profile.name}: ${report.profile.description}` : 'none of devices/ fits this host'}`,
        report.missingForGpu.length === 0 ? 'GPU           ready' : 'missing for GPU execution',
        ...report.missingForGpu.map((m) => `  - ${m}`),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
}
