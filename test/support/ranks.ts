// What a test needs to launch ranks of a process group on this host.
import { execFileSync, spawn } from 'node:child_process';
import * as net from 'node:net';
import { PYTHON } from './peer';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

// The environment torchrun gives one rank (rendezvous on 127.0.0.1:port), with one intra-op thread per rank:
// ranks on the same 2 cores must not oversubscribe them.
export function rankEnv(rank: number, port: number, extra: Record<string, string> = {}, world = 2): NodeJS.ProcessEnv {
  return {
    ...process.env,
    RANK: String(rank),
    WORLD_SIZE: String(world),
    LOCAL_RANK: String(rank),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(port),
    TORCHLINE_NUM_THREADS: '1',
    OMP_NUM_THREADS: '1',
    ...extra,
  };
}

// Runs `world` ranks of a Node script; resolves with each rank's JSON line (null when it printed none), rejects
// with the stderr of a rank that exits non-zero.
export async function runRanks(
  script: string,
  args: string[],
  world = 2,
  extra: Record<string, string> = {},
): Promise<any[]> {
  const port = await freePort();
  return Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise<any>((resolve, reject) => {
          const p = spawn(process.execPath, [script, ...args], { env: rankEnv(rank, port, extra, world) });
          let out = '';
          let err = '';
          p.stdout.on('data', (d) => (out += d));
          p.stderr.on('data', (d) => (err += d));
          p.on('exit', (code) =>
            code === 0
              ? resolve(out.trim() ? JSON.parse(out.trim()) : null)
              : reject(new Error(`rank ${rank} exited ${code}: ${err}`)),
          );
        }),
    ),
  );
}

// torchrun --standalone with 2 ranks of a Node script, one intra-op thread each; returns what the ranks printed
// (tee'd to torchrun's stdout and stderr). Per-rank --redirects values: Debian's torchrun 1.13 on Python 3.11
// cannot parse its own default '--redirects 0' (Std(0) is not "in Std" on 3.11).
export function torchrun(script: string, args: string[], timeout = 240_000): string {
  const launcher = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2'];
  return execFileSync(
    PYTHON,
    [...launcher, '--redirects', '0:2,1:2', '--tee', '0:3,1:3', '--no_python', process.execPath, script, ...args],
    { encoding: 'utf8', timeout, env: { ...process.env, TORCHLINE_NUM_THREADS: '1', OMP_NUM_THREADS: '1' } },
  );
}
