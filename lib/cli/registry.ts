// Subcommand table and shared flag handling for the CLI.
import { parseArgs, ParseArgsConfig } from 'node:util';

/** A usage error: printed without a stack trace, exit code 2. */
export class CliError extends Error {}

export interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** Positional arguments allowed (default 0). */
  positionals?: number;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number>;
}

/* eslint-disable @typescript-eslint/no-require-imports */
export const commands: Record<string, () => Command> = {
  train: () => require('./train').default,
  eval: () => require('./eval').default,
  list: () => require('./storage').list,
  download: () => require('./storage').download,
  upload: () => require('./storage').upload,
  bench: () => require('./bench').default,
  doctor: () => require('./doctor').default,
  demo: () => require('./demo').default,
  weights: () => require('./weights').default,
};
/* eslint-enable @typescript-eslint/no-require-imports */

function topHelp(): string {
  const rows = Object.entries(commands).map(([name, load]) => `  ${name.padEnd(10)} ${load().summary}`);
  return ['Usage: torchline <command> [flags]', '', 'Commands:', ...rows, '', 'Run `torchline <command> --help` for its flags.'].join('\n');
}

export function parse(cmd: Command, argv: string[]): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length > (cmd.positionals ?? 0)) {
      throw new CliError(`unexpected argument '${positionals[cmd.positionals ?? 0]}'\n${cmd.usage}`);
    }
    return { values, positionals };
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`${(err as Error).message}\n${cmd.usage}`);
  }
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topHelp() + '\n');
    return name ? 0 : 2;
  }
  const load = commands[name];
  if (!load) throw new CliError(`unknown command '${name}'\n\n${topHelp()}`);
  const cmd = load();
  const { values, positionals } = parse(cmd, rest);
  if (values.help) {
    process.stdout.write(cmd.usage + '\n');
    return 0;
  }
  return cmd.run(values, positionals);
}
