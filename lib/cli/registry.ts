// The subcommand table. Summaries are data here, so `torchline --help` lists
// every command without loading any of them (and so never loads LibTorch).
import { parseArgs } from 'node:util';
import { CliError } from './errors';
import type { Command } from './types';

interface Entry {
  summary: string;
  load(): Command;
}

export const commands: Record<string, Entry> = {
  train: {
    summary: 'download (optional), train, checkpoint, evaluate, upload',
    load: () => require('./train').default,
  },
  eval: {
    summary: 'evaluate a checkpoint on a folder (top-1, top-5, per class)',
    load: () => require('./eval').default,
  },
  list: {
    summary: 'Spark-style partitioned listing of gs://bucket/prefix or a folder',
    load: () => require('./storage').list,
  },
  download: {
    summary: 'verified parallel download of gs://bucket/prefix into a folder',
    load: () => require('./storage').download,
  },
  upload: {
    summary: 'verified upload of a file or folder to gs://bucket/prefix',
    load: () => require('./storage').upload,
  },
  bench: {
    summary: 'run a benchmark beside its Python peer (bench/README.md)',
    load: () => require('./bench').default,
  },
  doctor: { summary: 'show LibTorch, CUDA, BLAS and thread setup', load: () => require('./doctor').default },
  demo: {
    summary: 'run the whole pipeline on Fashion-MNIST through a local GCS server',
    load: () => require('./demo').default,
  },
  weights: {
    summary: 'list the pretrained weights (torchvision names) and what is in the torch hub cache',
    load: () => require('./weights').default,
  },
};

/** Flags every command takes. */
const COMMON = { help: { type: 'boolean', short: 'h' }, verbose: { type: 'boolean' } } as const;

export function topHelp(): string {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return [
    'Usage: torchline <command> [flags]',
    '',
    'Commands:',
    ...rows,
    '',
    'Run `torchline <command> --help` for its flags; --verbose prints stack traces.',
  ].join('\n');
}

export function parse(
  name: string,
  cmd: Command,
  argv: string[],
): { values: Record<string, unknown>; positionals: string[] } {
  const hint = `(torchline ${name} --help lists them)`;
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: { ...cmd.options, ...COMMON }, allowPositionals: true, strict: true });
  } catch (err) {
    // Node's parseArgs appends advice on '--' to unknown options; the flag list is the better pointer.
    throw new CliError(
      `${(err as Error).message.split('\n')[0].replace(/\. To specify a positional .*$/, '')} ${hint}`,
    );
  }
  if (parsed.positionals.length > (cmd.positionals ?? 0)) {
    throw new CliError(`unexpected argument '${parsed.positionals[cmd.positionals ?? 0]}' ${hint}`);
  }
  return parsed;
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topHelp() + '\n');
    return name ? 0 : 2;
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!entry) throw new CliError(`unknown command '${name}' (torchline --help lists them)`);
  const cmd = entry.load();
  const { values, positionals } = parse(name, cmd, rest);
  if (values.help) {
    process.stdout.write(cmd.usage + '\n');
    return 0;
  }
  return cmd.run(values, positionals);
}
