import * as ort from 'onnxruntime-node';
import { errorMessage } from '../errors';
import { ortSessionFactory } from './providers';
import { detectHost } from './host';
import { listDeviceProfiles, pickProfile, type DeviceProfile, type HostFacts, type ProviderName } from './profile';

export interface ProviderProbe {
  provider: ProviderName;
  /** Whether the npm package ships this provider's binaries for this platform without an extra install. */
  bundled: boolean | null;
  works: boolean;
  reason?: string;
}

export interface DoctorReport {
  host: HostFacts;
  onnxruntime: string;
  providers: ProviderProbe[];
  profile: DeviceProfile | null;
  /** What stands between this host and GPU execution, in the order to fix it. */
  missingForGpu: string[];
}

const PROBED: ProviderName[] = ['tensorrt', 'cuda', 'cpu'];

/**
 * Which execution providers really work here: each one opens `probeModel` (any small ONNX file) alone, because
 * the package's list of backends says what it ships, not what a source build added or what the host can load.
 */
export async function runDoctor(probeModel: string, host = detectHost()): Promise<DoctorReport> {
  const listed = new Map(ort.listSupportedBackends().map((b) => [b.name, b.bundled]));
  const providers: ProviderProbe[] = [];
  for (const provider of PROBED) {
    try {
      const session = await ortSessionFactory(probeModel, { executionProviders: [provider], intraOpNumThreads: 1 });
      await session.release();
      providers.push({ provider, bundled: listed.get(provider) ?? null, works: true });
    } catch (err) {
      providers.push({ provider, bundled: listed.get(provider) ?? null, works: false, reason: errorMessage(err) });
    }
  }
  const works = (p: ProviderName) => providers.some((x) => x.provider === p && x.works);
  const missingForGpu: string[] = [];
  if (!host.nvidiaGpu) missingForGpu.push('no NVIDIA GPU found (no /dev/nvidia0, /proc/driver/nvidia/version or Jetson device tree)');
  if (!works('cuda')) {
    missingForGpu.push(
      host.arch === 'arm64'
        ? 'this onnxruntime-node has no CUDA provider: on a Jetson, build it from source with scripts/jetson/build-onnxruntime-node.sh (README, "GPU and Jetson")'
        : 'this onnxruntime-node has no CUDA provider: re-run its install with ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node (README, "GPU and Jetson")',
    );
  }
  if (!works('tensorrt')) missingForGpu.push('no TensorRT provider: install TensorRT 10 (JetPack 6 ships it) and an onnxruntime-node built with --use_tensorrt');
  const profile = pickProfile(await listDeviceProfiles(), host) ?? null;
  return { host, onnxruntime: ort.env.versions.common, providers, profile, missingForGpu };
}
