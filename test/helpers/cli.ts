import { spawn, spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

export const ROOT = resolve(__dirname, '..', '..');

/** Arguments that run the real `sgmoe` command from the TypeScript sources. */
export function sgmoeArgs(...args: string[]): string[] {
  return ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args];
}

/** Runs `sgmoe` to completion (for commands that end on their own). */
export function sgmoe(...args: string[]) {
  return spawnSync(process.execPath, sgmoeArgs(...args), { cwd: ROOT, encoding: 'utf8' });
}

/** Starts `sgmoe` as a child process (for long-running commands such as `run`). */
export function startSgmoe(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawn(process.execPath, sgmoeArgs(...args), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs `sgmoe` to completion without blocking this process (for commands that talk to a node running in it). */
export function sgmoeAsync(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = startSgmoe(args);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}
