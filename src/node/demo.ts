import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorCode } from '../errors';
import { PushSource } from '../ingest/sources/push';
import { readFactoryReport } from '../model/report';
import type { NodeConfigInput } from './config';
import type { NodeSource } from './edge-node';

/** The bundled package: the demo's model and its camera. */
export const BUNDLED_MODEL = resolve(__dirname, '..', '..', 'models', 'fashion-sgmoe');

/** The demo's embedded defaults: bundled model, in-process broker on a free port, audit log in ./data/. */
export function demoConfig(): NodeConfigInput {
  return {
    model: BUNDLED_MODEL,
    sources: [],
    mqtt: { embeddedBroker: { port: 0 }, site: 'demo', device: 'demo-node' },
    audit: { file: join('data', 'audit.db') },
    dashboard: { port: 8080 },
  };
}

export interface SampleCamera {
  source: NodeSource;
  /** The true label of a frame the camera produced, from samples/labels.json. */
  labelOf(frameId: string): number | undefined;
  /** Plays the samples once, or again and again until the node stops the camera. */
  play(loop: boolean): Promise<void>;
  /** The package's accuracy on its whole test split (report.json), or null when the package does not say. */
  testAccuracy: number | null;
}

/** The package's samples/ played as a camera at `fps`, each frame named after its PNG (plus `#pass` when looping). */
export async function sampleCamera(modelDir: string, fps: number): Promise<SampleCamera> {
  const dir = join(modelDir, 'samples');
  const labels = new Map(Object.entries(JSON.parse(await readFile(join(dir, 'labels.json'), 'utf8')) as Record<string, number>));
  const frames = await Promise.all([...labels.keys()].map(async (name) => ({ name, bytes: await readFile(join(dir, name)) })));
  const camera = new PushSource('samples-camera');
  return {
    // The samples alone are too few, and not a random draw.
    testAccuracy: (await readFactoryReport(modelDir))?.testAccuracy ?? null,
    source: { source: camera, preprocess: {} },
    labelOf: (frameId) => labels.get(frameId.split('#')[0]),
    async play(loop) {
      try {
        let pass = 0;
        do {
          for (const { name, bytes } of frames) {
            // Named as a file, so a signal package windows a recording as its hot folder would.
            await camera.push({ id: pass === 0 ? name : `${name}#${pass}`, bytes, meta: { file: name } });
            if (fps > 0) await new Promise((r) => setTimeout(r, 1000 / fps));
          }
          pass++;
        } while (loop);
        camera.end();
      } catch (err) {
        // The node stopped the camera (Ctrl-C): the show is over.
        if (errorCode(err) !== 'E_SOURCE_STOPPED') throw err;
      }
    },
  };
}
