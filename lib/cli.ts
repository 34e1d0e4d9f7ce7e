#!/usr/bin/env node
// The `torchline` command. Each subcommand lives in lib/cli/<name>.ts and is
// loaded only when asked for, so `torchline --help` never loads LibTorch.
import { CliError, commands, run } from './cli/registry';

run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof CliError) {
      process.stderr.write(`torchline: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`torchline: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);

export { commands };
