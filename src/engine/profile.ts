import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { SgmoeError, errorCode } from '../errors';
import { readValidated, validate } from '../validate';
import { decoderSettingsSchema } from '../ingest/decoder/settings';

const tensorrtSchema = z.object({
  name: z.literal('tensorrt'),
  deviceId: z.number().int().nonnegative().default(0),
  fp16: z.boolean().default(false),
  /** Folder where TensorRT keeps built engines, so a restart does not rebuild them (minutes on a Jetson). */
  engineCachePath: z.string().optional(),
  workspaceBytes: z.number().int().positive().optional(),
});
const cudaSchema = z.object({ name: z.literal('cuda'), deviceId: z.number().int().nonnegative().default(0) });
const cpuSchema = z.object({ name: z.literal('cpu') });

export const providerSpecSchema = z.discriminatedUnion('name', [tensorrtSchema, cudaSchema, cpuSchema]);
export type ProviderSpec = z.infer<typeof providerSpecSchema>;
export type ProviderName = ProviderSpec['name'];

export const deviceProfileSchema = z.object({
  name: z.string().regex(/^[a-z0-9_-]+$/),
  description: z.string(),
  /** How `sgmoe doctor` recognises a host this profile fits. */
  match: z.object({
    arch: z.enum(['x64', 'arm64']),
    /** Substring of /proc/device-tree/model on Jetson boards, e.g. "Orin Nano". */
    jetsonModel: z.string().optional(),
    nvidiaGpu: z.boolean(),
  }),
  /** Tried in order; CPU should close every chain so a missing GPU provider never stops the node. */
  executionProviders: z.array(providerSpecSchema).min(1),
  /** intraOp 0 lets ONNX Runtime use one thread per physical core. */
  threads: z.object({ intraOp: z.number().int().nonnegative(), interOp: z.number().int().positive().default(1) }),
  experts: z.object({
    loading: z.enum(['eager', 'lazy']),
    /** Memory budget for resident expert sessions; least recently used ones are released beyond it. */
    budgetMB: z.number().positive().optional(),
  }),
  batch: z.object({ maxSize: z.number().int().positive(), maxWaitMs: z.number().nonnegative() }),
  /** What decodes camera streams on this device (default: ffmpeg in software). */
  decoder: decoderSettingsSchema.optional(),
});

export type DeviceProfile = z.infer<typeof deviceProfileSchema>;

export function parseDeviceProfile(json: unknown, where = 'device profile'): DeviceProfile {
  return validate(deviceProfileSchema, json, { code: 'E_PROFILE_INVALID', where });
}

/** The repository's devices/ folder (profiles ship with the SDK). */
export const DEVICES_DIR = resolve(__dirname, '..', '..', 'devices');

/** Loads a profile by file path or by name from devices/. */
export async function loadDeviceProfile(nameOrPath: string, devicesDir = DEVICES_DIR): Promise<DeviceProfile> {
  const path = nameOrPath.endsWith('.json') ? resolve(nameOrPath) : join(devicesDir, `${nameOrPath}.json`);
  try {
    return await readValidated(path, deviceProfileSchema, { code: 'E_PROFILE_INVALID', missing: 'E_PROFILE_NOT_FOUND', where: `device profile ${path}` });
  } catch (err) {
    if (errorCode(err) !== 'E_PROFILE_NOT_FOUND') throw err;
    const known = await listDeviceProfiles(devicesDir).then((ps) => ps.map((p) => p.name).join(', '), () => '');
    throw new SgmoeError('E_PROFILE_NOT_FOUND', `device profile ${nameOrPath} not found (looked at ${path}); known profiles: ${known}`);
  }
}

export async function listDeviceProfiles(devicesDir = DEVICES_DIR): Promise<DeviceProfile[]> {
  const files = (await readdir(devicesDir)).filter((f) => f.endsWith('.json')).sort();
  return Promise.all(files.map((f) => loadDeviceProfile(join(devicesDir, f), devicesDir)));
}

/** What the host is, as far as choosing a profile goes. */
export interface HostFacts {
  arch: string;
  /** /proc/device-tree/model on Jetson boards, e.g. "NVIDIA Jetson Orin Nano Developer Kit". */
  boardModel?: string;
  nvidiaGpu: boolean;
}

/** The most specific profile that fits: a Jetson model match first, then arch + GPU presence. */
export function pickProfile(profiles: DeviceProfile[], host: HostFacts): DeviceProfile | undefined {
  const fits = profiles.filter(
    (p) =>
      p.match.arch === host.arch &&
      p.match.nvidiaGpu === host.nvidiaGpu &&
      (p.match.jetsonModel === undefined || (host.boardModel ?? '').includes(p.match.jetsonModel)),
  );
  return fits.find((p) => p.match.jetsonModel !== undefined) ?? fits.find((p) => p.match.jetsonModel === undefined);
}
