// The shape of a subcommand (lib/cli/<name>.ts default-exports one).
import type { ParseArgsConfig } from 'node:util';

export type Flags = NonNullable<ParseArgsConfig['options']>;

export interface Command {
  usage: string;
  options: Flags;
  /** Positional arguments allowed (default 0). */
  positionals?: number;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number>;
}
