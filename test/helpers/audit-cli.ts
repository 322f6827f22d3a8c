import { Command } from 'commander';
import { PassThrough } from 'node:stream';
import { register } from '../../src/cli/commands/audit';

/** Runs `sgmoe audit ...` in this process, through the command module as main.ts wires it; returns what it printed. */
export async function auditCli(...args: string[]): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const program = new Command('sgmoe').exitOverride();
  register(program, out);
  await program.parseAsync(['node', 'sgmoe', 'audit', ...args]);
  return Buffer.concat(chunks).toString();
}
