// What a test needs to launch ranks of a process group on this host.
import * as net from 'node:net';

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
