import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { AuditLog } from '../../audit/audit-log';
import { decidedRecord, rejectedRecord, type FrameInfo } from '../../audit/record';
import { decisionEssentials, type Decision } from '../../engine/decision';
import { Engine } from '../../engine/engine';
import { loadDeviceProfile } from '../../engine/profile';
import { setFalseAlarmRate } from '../../engine/tasks';
import { errorCode, errorMessage, SgmoeError } from '../../errors';
import { preparerFor } from '../../ingest/kinds';
import { sha256Hex } from '../../model/integrity';
import { positiveInt, probability } from '../options';

interface InferOptions {
  model: string;
  threshold?: number;
  falseAlarmRate?: number;
  audit?: string;
  device?: string;
  batch: number;
}

/** One line of `infer` output: the decision's essentials, or why the file was rejected. */
function decisionLine(file: string, d: Decision): Record<string, unknown> {
  return { file, status: 'ok', labelIndex: d.labelIndex, ...decisionEssentials(d), model: d.model };
}

export function register(program: Command): void {
  program
    .command('infer')
    .description('decide image files with a model package: one JSON line per file on stdout (exit 2 when any file was rejected)')
    .requiredOption('--model <dir>', 'model package directory')
    .option('--threshold <t>', 'early-exit threshold instead of the manifest\'s', probability)
    .option('--false-alarm-rate <r>', 'anomaly packages: the threshold that flags this share of good frames (calibration quantiles)', probability)
    .option('--audit <file>', 'also record every decision in this SQLite audit log')
    .option('--device <profile>', 'device profile name or file (execution providers, threads)')
    .option('--batch <n>', 'frames per engine call', positiveInt, 16)
    .argument('<files...>', 'image files (JPEG, PNG, WebP, TIFF, GIF)')
    .action(async (files: string[], opts: InferOptions) => {
      const engine = await Engine.load(opts.model, { profile: opts.device ? await loadDeviceProfile(opts.device) : undefined });
      if (engine.manifest.input.kind !== 'image') {
        await engine.dispose();
        // A recording is cut into windows by the node's sources; a file here would be one undecidable frame.
        throw new SgmoeError(
          'E_USAGE',
          `sgmoe infer decides image files; ${engine.model.name} takes ${engine.manifest.input.kind} windows: run sgmoe run --model ${opts.model} --source dir:FOLDER --once on a folder of recordings`,
        );
      }
      if (opts.threshold !== undefined) engine.configure({ threshold: opts.threshold });
      if (opts.falseAlarmRate !== undefined) setFalseAlarmRate(engine.task, opts.falseAlarmRate, `--false-alarm-rate (${opts.model})`, 'E_CONFIG_INVALID');
      const { manifest } = engine;
      const audit = opts.audit
        ? AuditLog.open(opts.audit, {
            model: { ...engine.model, experts: manifest.parts.experts.length, expertShare: manifest.calibration.expertShare },
          })
        : undefined;
      const pre = preparerFor(manifest.input);
      let rejected = 0;
      try {
        for (let start = 0; start < files.length; start += opts.batch) {
          const chunk = files.slice(start, start + opts.batch);
          // Read and preprocess the chunk concurrently; a bad file is reported and does not stop the others.
          const prepared = await Promise.all(
            chunk.map(async (file) => {
              const frame: FrameInfo = { frameId: file, source: 'cli', receivedAt: Date.now() };
              try {
                const bytes = await readFile(file).catch((err: unknown) => {
                  throw new SgmoeError('E_FRAME_READ', `cannot read ${file}: ${errorMessage(err)}`);
                });
                frame.inputSha256 = sha256Hex(bytes);
                return { file, frame, tensor: await pre.toTensor({ id: file, source: 'cli', receivedAt: Date.now(), bytes }) };
              } catch (err) {
                return { file, frame, error: { code: errorCode(err), message: errorMessage(err) } };
              }
            }),
          );
          const ok = prepared.filter((p) => p.tensor !== undefined);
          const decisions = await engine.inferBatch(ok.map((p) => p.tensor!), ok.map((p) => p.file));
          for (const p of prepared) {
            if (p.error) {
              rejected++;
              audit?.record(rejectedRecord(p.frame, p.error, engine.model));
              process.stdout.write(JSON.stringify({ file: p.file, status: 'rejected', error: p.error }) + '\n');
            } else {
              const d = decisions[ok.indexOf(p)];
              audit?.record(decidedRecord(d, p.frame));
              process.stdout.write(JSON.stringify(decisionLine(p.file, d)) + '\n');
            }
          }
        }
      } finally {
        audit?.close();
        await engine.dispose();
      }
      process.exitCode = rejected > 0 ? 2 : 0;
    });
}
