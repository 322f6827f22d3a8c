import * as ort from 'onnxruntime-node';
import { SgmoeError, errorMessage } from '../errors';
import type { ProviderName, ProviderSpec } from './profile';

// ONNX Runtime's native logger writes coloured lines straight to stderr, around pino. Every failure it would report
// there reaches us as an exception (recorded per part and logged structured), so keep only its fatal messages.
ort.env.logLevel = 'fatal';

/** Creates ONNX Runtime sessions; injectable so the provider chain's logic is testable without a GPU. */
export type SessionFactory = (path: string, options: ort.InferenceSession.SessionOptions) => Promise<ort.InferenceSession>;

export const ortSessionFactory: SessionFactory = (path, options) => ort.InferenceSession.create(path, options);

export interface ProviderAttempt {
  provider: ProviderName;
  ok: boolean;
  /** Why the provider was not used (the runtime's own message). */
  reason?: string;
}

/** Where a part runs and how that was decided. */
export interface Placement {
  provider: ProviderName;
  attempts: ProviderAttempt[];
  /** Provider settings in force, e.g. TensorRT fp16 and engine cache. */
  settings: Record<string, string | number | boolean>;
}

export interface Threads {
  intraOp: number;
  interOp: number;
}

/**
 * onnxruntime-node passes only `deviceId` to the TensorRT provider; the provider reads its other settings from
 * these environment variables when no explicit TensorRT options are given (which is what the Node binding does).
 */
export function tensorrtEnvironment(spec: Extract<ProviderSpec, { name: 'tensorrt' }>): Record<string, string> {
  const env: Record<string, string> = { ORT_TENSORRT_FP16_ENABLE: spec.fp16 ? '1' : '0' };
  if (spec.engineCachePath) {
    env.ORT_TENSORRT_ENGINE_CACHE_ENABLE = '1';
    env.ORT_TENSORRT_CACHE_PATH = spec.engineCachePath;
  }
  if (spec.workspaceBytes) env.ORT_TENSORRT_MAX_WORKSPACE_SIZE = String(spec.workspaceBytes);
  return env;
}

function toOrtProvider(spec: ProviderSpec): ort.InferenceSession.ExecutionProviderConfig {
  return spec.name === 'cpu' ? 'cpu' : { name: spec.name, deviceId: spec.deviceId };
}

function settingsOf(spec: ProviderSpec): Record<string, string | number | boolean> {
  if (spec.name === 'cpu') return {};
  return spec.name === 'tensorrt' ? { deviceId: spec.deviceId, ...tensorrtEnvironment(spec) } : { deviceId: spec.deviceId };
}

/**
 * Opens a session on the first provider of the chain that this build and host can run. Attempt i hands ONNX
 * Runtime the rest of the chain (i..end), so nodes the chosen provider cannot take fall to the next one (TensorRT
 * to CUDA, CUDA to CPU) exactly as ONNX Runtime assigns them; a provider missing from the build makes session
 * creation throw, and the reason is recorded before trying the next.
 */
export async function openSession(
  path: string,
  chain: ProviderSpec[],
  threads: Threads,
  createSession: SessionFactory = ortSessionFactory,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ session: ort.InferenceSession; placement: Placement }> {
  const attempts: ProviderAttempt[] = [];
  for (let i = 0; i < chain.length; i++) {
    const spec = chain[i];
    if (spec.name === 'tensorrt') Object.assign(env, tensorrtEnvironment(spec));
    try {
      const session = await createSession(path, {
        executionProviders: chain.slice(i).map(toOrtProvider),
        intraOpNumThreads: threads.intraOp,
        interOpNumThreads: threads.interOp,
        graphOptimizationLevel: 'all',
      });
      attempts.push({ provider: spec.name, ok: true });
      return { session, placement: { provider: spec.name, attempts, settings: settingsOf(spec) } };
    } catch (err) {
      attempts.push({ provider: spec.name, ok: false, reason: errorMessage(err) });
    }
  }
  throw new SgmoeError(
    'E_PROVIDER_UNAVAILABLE',
    `no execution provider of the chain [${chain.map((s) => s.name).join(', ')}] could open ${path}: ` +
      attempts.map((a) => `${a.provider}: ${a.reason}`).join('; '),
    { attempts },
  );
}
