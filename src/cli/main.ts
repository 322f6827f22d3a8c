#!/usr/bin/env node
import { Command } from 'commander';
import { SgmoeError, errorCode, errorMessage } from '../errors';
import { LOG_FORMATS, setLogFormat, type LogFormat } from '../log';
import { configureSharp } from '../ingest/sharp-config';
import { SDK_VERSION } from '../version';
import { registerCommands } from './commands';

/** Entry point of the `sgmoe` command. Each sub-command lives in its own module under ./commands. */
async function main(argv: string[]): Promise<void> {
  configureSharp();
  const program = new Command('sgmoe')
    .description('Run single-gate Mixture-of-Experts vision models on edge devices')
    .version(SDK_VERSION)
    .option('--log-format <format>', `logs on stderr: ${LOG_FORMATS.join(' | ')} (auto: human lines in a terminal, JSON in a pipe)`, 'auto')
    .hook('preAction', (command, action) => {
      quietOnClosedStdout(action.name() !== 'run');
      const format = command.opts().logFormat as LogFormat;
      if (!LOG_FORMATS.includes(format)) throw new SgmoeError('E_USAGE', `--log-format: expected one of ${LOG_FORMATS.join(', ')}, found "${format}"`);
      setLogFormat(format);
    })
    .showHelpAfterError()
    .exitOverride((err) => {
      // commander exits 0 for --help/--version and 1 for usage errors, matching docs/DESIGN.md's exit codes.
      process.exit(err.exitCode);
    });
  registerCommands(program);
  await program.parseAsync(argv);
}

/**
 * A reader that stops early (`| head`) closes the pipe. A one-shot command (a query, an export) has written what it
 * wanted, so it stops quietly; the node (`run`) goes on deciding, its stdout lines being a view of what the audit log
 * and MQTT carry.
 */
function quietOnClosedStdout(exit: boolean): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (exit) process.exit(0);
  });
}

main(process.argv).catch((err: unknown) => {
  process.stderr.write(`sgmoe: ${errorCode(err)}: ${errorMessage(err)}\n`);
  process.exit(1);
});
