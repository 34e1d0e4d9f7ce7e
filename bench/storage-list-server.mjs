// A lean in-memory server for the GCS JSON API's objects.list, following
// https://cloud.google.com/storage/docs/json_api/v1/objects/list: prefix,
// delimiter (prefixes are returned once, sorted, and count toward maxResults
// with the items), startOffset / endOffset (lexicographic bounds, inclusive /
// exclusive), maxResults, opaque pageToken. Objects live in one sorted array
// and each call costs O(log n + page), as a real index does.
//
// Why it exists: the Firebase emulator scans and sorts every stored object on
// each list call and ignores startOffset/endOffset, so under it a listing's
// time is the emulator's CPU, not round trips. bench/storage.mjs uses this
// server behind its latency proxy for the ImageNet-shaped listing (a model of
// real GCS, where round trips dominate), and test/storage/listing.test.ts uses
// it to check range listing against the emulator's results.
import * as http from 'node:http';

const lowerBound = (arr, key) => {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid].name < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
};

/** objects: [{ name, size }]; returns { url, requests, close() }. */
export async function startListServer(objects, { bucket = 'list-bkt', updated = '2024-01-01T00:00:00.000Z' } = {}) {
  const sorted = objects
    .map((o) => ({ name: o.name, size: String(o.size ?? 0) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const state = { requests: 0, withOffsets: 0 };
  // Each object's JSON, made once per `fields` selection: serialising a page
  // is then a join. GCS answers list calls from many machines; here one
  // thread shares 2 cores with the client, so per-page serialising would
  // otherwise be measured as the listing's cost.
  const fragments = new Map();
  const pages = new Map();
  const fragmentsFor = (itemFields) => {
    const key = itemFields ? itemFields.join(',') : '*';
    let cache = fragments.get(key);
    if (!cache) fragments.set(key, (cache = new Map()));
    return cache;
  };
  const itemJson = (o, itemFields, cache) => {
    let s = cache.get(o.name);
    if (s === undefined) {
      const full = {
        kind: 'storage#object',
        bucket,
        name: o.name,
        size: o.size,
        updated,
        generation: '1',
        md5Hash: '1B2M2Y8AsgTpgAmY7PhCfg==',
        crc32c: 'AAAAAA==',
      };
      s = JSON.stringify(
        itemFields ? Object.fromEntries(itemFields.filter((f) => f in full).map((f) => [f, full[f]])) : full,
      );
      cache.set(o.name, s);
    }
    return s;
  };
  const server = http.createServer((req, res) => {
    state.requests++;
    const u = new URL(req.url ?? '/', 'http://x');
    const m = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(u.pathname);
    req.resume();
    if (req.method !== 'GET' || !m || decodeURIComponent(m[1]) !== bucket) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 404, message: 'not found' } }));
      return;
    }
    const q = u.searchParams;
    // Partial responses as GCS gives them for `fields=items(a,b,...),prefixes,nextPageToken`.
    const itemFields = /items\(([^)]*)\)/
      .exec(q.get('fields') ?? '')?.[1]
      .split(',')
      .map((f) => f.trim());
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') ?? '';
    const startOffset = q.get('startOffset') ?? '';
    const endOffset = q.get('endOffset');
    if (q.has('startOffset') || q.has('endOffset')) state.withOffsets++;
    // Objects never change here, so an answer can be kept by its query:
    // a repeated listing (the bench takes the best of several) costs the
    // server a lookup, as a round trip to GCS costs the client only latency.
    const hit = pages.get(u.search);
    if (hit !== undefined) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': hit.length });
      res.end(hit);
      return;
    }
    const max = Math.min(1000, Math.max(1, Number(q.get('maxResults') ?? 1000)));
    const token = q.get('pageToken') ? Buffer.from(q.get('pageToken'), 'base64url').toString('utf8') : '';
    let from = prefix;
    if (startOffset > from) from = startOffset;
    if (token > from) from = token;
    const cache = fragmentsFor(itemFields);
    const items = [];
    const prefixes = [];
    let i = lowerBound(sorted, from);
    let next;
    while (i < sorted.length) {
      const o = sorted[i];
      if (!o.name.startsWith(prefix) || (endOffset !== null && o.name >= endOffset)) break;
      if (items.length + prefixes.length >= max) {
        next = o.name;
        break;
      }
      const cut = delimiter ? o.name.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) {
        const p = o.name.slice(0, cut + delimiter.length);
        prefixes.push(p);
        // Skip the rest of this prefix: the next name not starting with it.
        i = lowerBound(sorted, p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1));
        continue;
      }
      items.push(itemJson(o, itemFields, cache));
      i++;
    }
    let body = '{"kind":"storage#objects"';
    if (items.length) body += `,"items":[${items.join(',')}]`;
    if (prefixes.length) body += `,"prefixes":${JSON.stringify(prefixes)}`;
    if (next !== undefined) body += `,"nextPageToken":"${Buffer.from(next, 'utf8').toString('base64url')}"`;
    body += '}';
    const bytes = Buffer.from(body, 'utf8');
    pages.set(u.search, bytes);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length });
    res.end(bytes);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    bucket,
    state,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
