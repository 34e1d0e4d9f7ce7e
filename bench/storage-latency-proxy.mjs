// A proxy adding a fixed delay per request (keep-alive both sides): the
// bench's stand-in for the round trip to real GCS. Run as a script it serves
// in its own process and prints its URL, so that relaying bodies costs the
// measured client's thread nothing:
//   node bench/storage-latency-proxy.mjs UPSTREAM_URL MS
import * as http from 'node:http';
import { fileURLToPath } from 'node:url';

export async function startLatencyProxy(upstream, ms) {
  const up = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const server = http.createServer((req, res) => {
    setTimeout(() => {
      const p = http.request(
        { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, agent },
        (pr) => {
          res.writeHead(pr.statusCode, pr.headers);
          pr.pipe(res);
        },
      );
      p.on('error', () => res.destroy());
      req.pipe(p);
    }, ms);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => (server.closeAllConnections(), server.close(), agent.destroy()),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const p = await startLatencyProxy(process.argv[2], Number(process.argv[3]));
  console.log(p.url);
}
