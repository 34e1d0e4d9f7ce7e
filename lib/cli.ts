#!/usr/bin/env node
// The `torchline` command. Each subcommand lives in lib/cli/<name>.ts and is
// loaded only when asked for, so `torchline --help` never loads LibTorch.
import { report } from './cli/errors';
import { run } from './cli/registry';

const argv = process.argv.slice(2);
run(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const { text, code } = report(err, argv.includes('--verbose'));
    process.stderr.write(text + '\n');
    process.exitCode = code;
  },
);
