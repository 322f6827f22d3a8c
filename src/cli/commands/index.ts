import type { Command } from 'commander';
import { register as registerModel } from './model';
import { registerFleetModelCommands } from './model-fleet';
import { register as registerDoctor } from './doctor';
import { register as registerAudit } from './audit';
import { register as registerInfer } from './infer';
import { register as registerRun } from './run';
import { register as registerBench } from './bench';
import { register as registerCmd } from './cmd';
import { register as registerFleet } from './fleet';

/**
 * Every sub-command module exports `register(program)`; this list is the one place that wires them.
 * Add one import and one line per command.
 */
export function registerCommands(program: Command): void {
  registerFleetModelCommands(registerModel(program));
  registerDoctor(program);
  registerAudit(program);
  registerInfer(program);
  registerRun(program);
  registerBench(program);
  registerCmd(program);
  registerFleet(program);
}
