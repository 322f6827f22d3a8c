import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { SgmoeError } from '../../errors';
import { verifySignedTar } from '../../fleet/verify-tar';
import { Engine } from '../../engine/engine';
import { describeAnomalyExit } from '../../engine/tasks';
import { verifyPackage } from '../../engine/verify';
import { describeInput } from '../../ingest/kinds';
import { loadPackage } from '../../model/package';

/**
 * `sgmoe model ...`: verify and inspect here; the fleet's pack/sign/publish sub-commands attach to the same
 * `model` command from their own module.
 */
export function register(program: Command): Command {
  const model = program.command('model').description('Check, inspect, pack, sign and publish model packages');

  model
    .command('verify')
    .argument('<dir>', 'package directory, or a package tar (with --pubkey)')
    .option('--pubkey <file>', 'for a tar: the signer\'s ed25519 public key; PKG.sig must sit next to the tar')
    .option('--json', 'print the report as JSON')
    .description('check the manifest, every sha256, the parts\' shapes and the golden self-test in ONNX Runtime; for a tar, first its digest and signature (exit 2 when any check fails)')
    .action(async (dir: string, opts: { pubkey?: string; json?: boolean }) => {
      let report;
      if ((await stat(dir).catch(() => null))?.isFile()) {
        if (!opts.pubkey) throw new SgmoeError('E_USAGE', `${dir} is a file: expected --pubkey KEY to check its signature`);
        report = await verifySignedTar(dir, opts.pubkey, { threads: { intraOp: 1 } });
      } else {
        report = await verifyPackage(dir, { threads: { intraOp: 1 } });
      }
      if (opts.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      } else {
        for (const c of report.checks) {
          process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(9)} ${c.code ? `${c.code} ` : ''}${c.detail.replace(/\n/g, '\n               ')}\n`);
        }
        for (const w of report.warnings ?? []) process.stdout.write(`warning: ${w}\n`);
        process.stdout.write(report.ok ? `${dir}: verified\n` : `${dir}: verification failed\n`);
      }
      process.exitCode = report.ok ? 0 : 2;
    });

  model
    .command('inspect')
    .argument('<dir>', 'package directory')
    .option('--json', 'print as JSON')
    .description('show a package: labels, parts with MACs and sizes, routing, calibration curve, providers')
    .action(async (dir: string, opts: { json?: boolean }) => {
      const pkg = await loadPackage(dir);
      const engine = await Engine.load(pkg, { threads: { intraOp: 1 }, warmup: false });
      const providers = engine.providerSummary();
      await engine.dispose();
      const m = pkg.manifest;
      const parts = [pkg.trunk, pkg.base, pkg.gate, ...pkg.experts].map((p) => ({
        part: p.name,
        file: p.spec.file,
        macs: p.spec.macs,
        bytes: p.bytes,
        provider: providers[p.name],
      }));
      if (opts.json) {
        process.stdout.write(JSON.stringify({ manifest: m, parts }, null, 2) + '\n');
        return;
      }
      const anomaly = m.calibration.anomaly;
      const out: string[] = [
        `${m.name} ${m.version} (${m.format}, ${m.task})`,
        `input   ${describeInput(m.input)}`,
        `labels  ${m.labels.join(', ')}`,
        `routing topK ${m.routing.topK}, ${anomaly ? describeAnomalyExit(m.routing.earlyExit.threshold) : `early exit at base confidence >= ${m.routing.earlyExit.threshold}`}, base weight ${m.routing.ensemble.baseWeight}`,
        ...(anomaly ? [`anomaly threshold ${anomaly.threshold} for a false-alarm rate of ${anomaly.falseAlarmRate} (set on ${anomaly.heldOutGood} held-out good images)`] : []),
        '',
        'part        MACs/sample       bytes  provider  file',
        ...parts.map((p) => `${p.part.padEnd(10)} ${String(p.macs).padStart(12)} ${String(p.bytes).padStart(11)}  ${p.provider.padEnd(8)}  ${p.file}`),
        '',
        `calibration (validation)${m.calibration.rule ? `: ${m.calibration.rule}` : ''}`,
        'threshold  accuracy  expertRate   meanMacs',
        ...m.calibration.points.map(
          (p) => `${p.threshold.toFixed(3).padStart(9)}  ${(p.accuracy === undefined ? "—" : `${(p.accuracy * 100).toFixed(2)}%`).padStart(8)}  ${(p.expertRate * 100).toFixed(1).padStart(9)}%  ${Math.round(p.meanMacs).toString().padStart(9)}`,
        ),
        `expert share ${m.calibration.expertShare.map((s) => `${(s * 100).toFixed(1)}%`).join(' ')}`,
      ];
      process.stdout.write(out.join('\n') + '\n');
    });
  return model;
}
