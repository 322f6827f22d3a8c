import { z } from 'zod';

/**
 * Which decoder turns camera streams into model-sized frames on a device: the `decoder` field of its profile
 * (devices/*.json), validated with the rest of the profile (src/engine/profile.ts). ffmpeg (Debian's, software or with an `-hwaccel`) everywhere; on Jetson boards GStreamer
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
