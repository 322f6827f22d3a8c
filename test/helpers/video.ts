import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { BUNDLED } from './package';

/** The package's samples, in name order, as an H.264 clip at 25 fps (each 28x28 sample scaled up 8x, near-lossless). */
export function samplesClip(path: string, container: 'mp4' | 'mpegts' = 'mp4', size = 224): string {
  execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-framerate', '25', '-pattern_type', 'glob', '-i', join(BUNDLED, 'samples', '*.png'),
    '-vf', `scale=${size}:${size}:flags=neighbor,format=yuv420p`,
    '-c:v', 'libx264', '-crf', '8', '-g', '25', '-f', container, path,
  ]);
  return path;
}
