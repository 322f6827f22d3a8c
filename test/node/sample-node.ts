/** A real edge node on the bundled model, fed from hot folders of the package's sample frames. */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { WaveFile } from 'wavefile';
import type { Decision } from '../../src/engine/decision';
import { parseWav } from '../../src/ingest/kinds/signal/wav';
import { parseNodeConfig, type NodeConfigInput } from '../../src/node/config';
import { createEdgeNode, type CreatedNode } from '../../src/node/create';
import { BUNDLED } from '../helpers/package';

export const SAMPLES = join(BUNDLED, 'samples');
export const SAMPLE_NAMES = readdirSync(SAMPLES).filter((n) => n.endsWith('.png')).sort();

/** A folder holding `count` samples from `offset`, and a PNG cut short (undecodable) when `corrupt` is set. */
export function hotFolder(path: string, count: number, options: { offset?: number; corrupt?: string } = {}): string {
  mkdirSync(path, { recursive: true });
  for (const name of SAMPLE_NAMES.slice(options.offset ?? 0, (options.offset ?? 0) + count)) copyFileSync(join(SAMPLES, name), join(path, name));
  if (options.corrupt) writeFileSync(join(path, options.corrupt), Buffer.from('\x89PNG\r\n\x1a\n then nothing that decodes'));
  return path;
}

/** The shipped signal package (bearing condition). */
export const BEARING = resolve(__dirname, '..', '..', 'models', 'bearing-sgmoe');

/** Recordings of two of the signal package's sample windows back to back: 3 windows each (8192 samples every 4096). */
export function recordings(path: string, count: number): string[] {
  mkdirSync(path, { recursive: true });
  const { sampleRate } = JSON.parse(readFileSync(join(BEARING, 'manifest.json'), 'utf8')).input;
  const samples = readdirSync(join(BEARING, 'samples')).filter((n) => n.endsWith('.wav'));
  const channels = (i: number) => parseWav(readFileSync(join(BEARING, 'samples', samples[i])), samples[i]).samples;
  const names = Array.from({ length: count }, (_, i) => `rec-${i}.wav`);
  names.forEach((name, i) => {
    const data = channels(i).map((c, axis) => [...c, ...channels(i + 1)[axis]]);
    const wav = new WaveFile();
    wav.fromScratch(data.length, sampleRate, '32f', data);
    writeFileSync(join(path, name), wav.toBuffer());
  });
  return names;
}

export interface SampleNode extends CreatedNode {
  /** Every decision the node emitted, in order. */
  decisions: Decision[];
  /** Every frame the node rejected, with the code it gave. */
  rejected: Array<{ frameId: string; code: string }>;
}

/** A node on the bundled model (or `model`) with one ONNX Runtime thread, handling the folders once (`sources` go as given). */
export async function sampleNode(config: Omit<NodeConfigInput, 'model'> & { model?: string }): Promise<SampleNode> {
  const created = await createEdgeNode(parseNodeConfig({ model: BUNDLED, threads: 1, once: true, ...config }));
  const sample: SampleNode = { ...created, decisions: [], rejected: [] };
  created.node.on('decision', (_frame, d) => sample.decisions.push(d));
  created.node.on('rejected', (frame, err) => sample.rejected.push({ frameId: frame.id, code: err.code }));
  return sample;
}

/** Parses Prometheus text exposition into `name{labels}` → value, labels sorted by name. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)$/i.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    out.set(labels.length > 0 ? `${m[1]}{${labels.join(',')}}` : m[1], Number(m[3]));
  }
  return out;
}
