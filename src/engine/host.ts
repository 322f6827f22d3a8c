import { existsSync, readFileSync } from 'node:fs';
import type { HostFacts } from './profile';

/** Reads what decides the device profile: CPU architecture, Jetson board model, NVIDIA GPU presence. */
export function detectHost(root = '/'): HostFacts {
  const read = (path: string): string | undefined => {
    try {
      return readFileSync(root + path, 'utf8').replace(/\0/g, '').trim();
    } catch {
      return undefined;
    }
  };
  const boardModel = read('proc/device-tree/model');
  const jetson = boardModel?.includes('Jetson') || existsSync(root + 'etc/nv_tegra_release');
  const nvidiaGpu = Boolean(jetson) || existsSync(root + 'dev/nvidia0') || existsSync(root + 'proc/driver/nvidia/version');
  return { arch: process.arch, boardModel, nvidiaGpu };
}
