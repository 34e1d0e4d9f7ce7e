// `torchline list | download | upload`: the storage layer from the shell.
import type { Command } from './types';
import { CliError, inputStep } from './errors';

export const list: Command = {
  usage: `Usage: torchline list LOCATION [--json] [--recursive] [--base-path LOC] [--glob PATTERN] [--image] [--min-partitions N] [--rank R --world-size W]

  LOCATION            gs://bucket/prefix or a local folder
  --json              one JSON object (files, partitions, columns) instead of a table
  --recursive         Spark's recursiveFileLookup: files at every depth, no partition columns. Without it
                      (and without key=value folders) only the root's direct children are listed, as in
                      Spark: class folders (train/<class>/x.jpg) need --recursive
  --base-path LOC     Spark's basePath: where partition discovery stops (an ancestor of LOCATION)
  --glob PATTERN      Spark's pathGlobFilter on file names, e.g. '*.jpg'
  --image             read each file's image header (Spark's image schema), dropping invalid ones
  --min-partitions N  spark.sql.files.minPartitionNum (default: --world-size, else this machine's cores)
  --rank R --world-size W   only the partitions of one rank (every rank must use the same plan)
  --parquet           describe a Spark Parquet table (automatic when every file ends in .parquet):
                      its kind (image / binaryFile), partitions, files, row groups and rows; with
                      --rank/--world-size, the row groups that rank reads`,
  positionals: 1,
  options: {
    json: { type: 'boolean' },
    recursive: { type: 'boolean' },
    'base-path': { type: 'string' },
    'min-partitions': { type: 'string' },
    glob: { type: 'string' },
    image: { type: 'boolean' },
    rank: { type: 'string' },
    'world-size': { type: 'string' },
    parquet: { type: 'boolean' },
  },
  async run(v, pos) {
    if (!pos[0]) throw new CliError('list needs a LOCATION (gs://bucket/prefix or a folder)');
    const tl = await import('../index');
    const sharded = v.rank !== undefined || v['world-size'] !== undefined;
    const rank = Number(v.rank);
    const world = Number(v['world-size']);
    if (sharded && (!Number.isInteger(rank) || !Number.isInteger(world) || world < 1 || rank < 0 || rank >= world)) {
      throw new CliError('--rank and --world-size must be integers with 0 <= rank < world-size');
    }
    const minPartitionNum = v['min-partitions'] !== undefined ? Number(v['min-partitions']) : undefined;
    if (minPartitionNum !== undefined && !(Number.isInteger(minPartitionNum) && minPartitionNum >= 1))
      throw new CliError('--min-partitions must be a positive integer');
    const l = await inputStep(`cannot list ${pos[0]}`, () =>
      tl.listPartitioned(pos[0], {
        recursiveFileLookup: Boolean(v.recursive),
        basePath: v['base-path'] as string | undefined,
        pathGlobFilter: v.glob as string | undefined,
        image: v.image ? { dropInvalid: true } : false,
        minPartitionNum,
        worldSize: sharded ? world : undefined,
      }),
    );
    if (v.parquet || (l.files.length > 0 && !v.image && l.files.every((f) => f.path.endsWith('.parquet')))) {
      const { describeParquet } = await import('./parquet');
      return describeParquet(pos[0], {
        json: Boolean(v.json),
        glob: v.glob as string | undefined,
        share: sharded ? { rank, world } : undefined,
      });
    }
    const parts = sharded ? l.forRank(rank, world) : l.partitions;
    if (v.json) {
      process.stdout.write(
        JSON.stringify({
          root: String(l.root),
          columns: l.partitionColumns,
          maxSplitBytes: l.maxSplitBytes,
          partitions: parts.map((p) => ({
            index: p.index,
            files: p.files.map((f) => ({
              path: f.path,
              length: f.length,
              modificationTime: f.modificationTime,
              partitionValues: f.partitionValues,
            })),
          })),
        }) + '\n',
      );
      return 0;
    }
    const rows = parts.flatMap((p) =>
      p.files.map((f) => [
        String(p.index),
        String(f.length),
        f.path,
        Object.entries(f.partitionValues)
          .map(([k, x]) => `${k}=${x}`)
          .join(','),
      ]),
    );
    const w = [9, 10];
    process.stdout.write(`${'partition'.padEnd(w[0])} ${'bytes'.padStart(w[1])}  path\n`);
    for (const r of rows)
      process.stdout.write(`${r[0].padEnd(w[0])} ${r[1].padStart(w[1])}  ${r[2]}${r[3] ? `  [${r[3]}]` : ''}\n`);
    process.stdout.write(
      `${rows.length} files in ${parts.length} partitions (maxSplitBytes ${l.maxSplitBytes}); ${l.stats.listRequests} list requests in ${l.stats.ms.toFixed(0)} ms\n`,
    );
    return 0;
  },
};

export const download: Command = {
  usage: 'Usage: torchline download gs://BUCKET/PREFIX DIR [--concurrency N]',
  positionals: 2,
  options: { concurrency: { type: 'string' } },
  async run(v, pos) {
    if (pos.length !== 2) throw new CliError('download needs a source gs://bucket/prefix and a destination folder');
    const tl = await import('../index');
    const concurrency = v.concurrency === undefined ? undefined : Number(v.concurrency);
    if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency >= 1))
      throw new CliError(`--concurrency must be a positive integer, got '${v.concurrency}'`);
    const r = await inputStep(`cannot download ${pos[0]}`, () => tl.download(pos[0], pos[1], { concurrency }));
    process.stdout.write(
      `${r.downloaded} downloaded, ${r.skipped} already present, ${r.bytes} bytes, ${r.retries} retries, ${(r.ms / 1000).toFixed(1)} s\n`,
    );
    return 0;
  },
};

export const upload: Command = {
  usage: 'Usage: torchline upload PATH gs://BUCKET/PREFIX',
  positionals: 2,
  options: {},
  async run(_v, pos) {
    if (pos.length !== 2)
      throw new CliError('upload needs a local file or folder and a destination gs://bucket/prefix');
    const tl = await import('../index');
    const r = await inputStep(`cannot upload ${pos[0]} to ${pos[1]}`, () => tl.upload(pos[0], pos[1]));
    process.stdout.write(`${r.files.length} files uploaded to ${pos[1]}\n`);
    return 0;
  },
};
