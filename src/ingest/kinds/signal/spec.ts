import { z } from 'zod';

/** `manifest.input` of a signal package: windows of sensor samples, channel-major ([N, channels, window]). */
export const signalSpecSchema = z.object({
  kind: z.literal('signal'),
  name: z.string().min(1),
  channels: z.number().int().positive(),
  sampleRate: z.number().positive(),
  window: z.number().int().positive(),
  hop: z.number().int().positive(),
  units: z.string().min(1),
  layout: z.literal('NCW'),
});

export type SignalSpec = z.infer<typeof signalSpecSchema>;
