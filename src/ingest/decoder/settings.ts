import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { DEVICES_DIR } from '../../engine/profile';
import { SgmoeError } from '../../errors';

/**
 * Which decoder turns camera streams into model-sized frames on a device: the `decoder` field of its profile
 * (devices/*.json). ffmpeg (Debian's, software or with an `-hwaccel`) everywhere; on Jetson boards GStreamer
 * with NVIDIA's hardware elements (nvv4l2decoder for H.264/H.265, nvjpegdec for MJPEG, nvvidconv to crop/scale).
 */
export const decoderSettingsSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('ffmpeg'),
      command: z.string().min(1).default('ffmpeg'),
      /** ffmpeg's `-hwaccel` (cuda, vaapi, qsv, ...); decoded frames come back to system memory for the filters. */
      hwaccel: z.string().regex(/^[a-z0-9_]+$/).optional(),
    })
    .strict(),
  z
    .object({
      kind: z.literal('gstreamer'),
      command: z.string().min(1).default('gst-launch-1.0'),
      /** The element set: `jetson` = nvv4l2decoder / nvjpegdec / nvvidconv (JetPack). */
      elements: z.literal('jetson'),
    })
    .strict(),
]);

export type DecoderSettings = z.output<typeof decoderSettingsSchema>;
export const DEFAULT_DECODER: DecoderSettings = { kind: 'ffmpeg', command: 'ffmpeg' };

/** The decoder of a device profile (name in devices/ or a file); ffmpeg when the profile names none. */
export async function loadDecoderSettings(nameOrPath: string, devicesDir = DEVICES_DIR): Promise<DecoderSettings> {
  const path = nameOrPath.endsWith('.json') ? resolve(nameOrPath) : join(devicesDir, `${nameOrPath}.json`);
  const json = JSON.parse(await readFile(path, 'utf8')) as { decoder?: unknown };
  return parseDecoderSettings(json.decoder, `${path}: decoder`);
}

export function parseDecoderSettings(value: unknown, where = 'decoder'): DecoderSettings {
  if (value === undefined) return DEFAULT_DECODER;
  const parsed = decoderSettingsSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new SgmoeError('E_PROFILE_INVALID', `${where} is not a valid decoder: ${problems.join('; ')}`, { problems });
  }
  return parsed.data;
}
