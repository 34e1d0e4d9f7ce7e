// `torchline list` on a Spark Parquet table: what a training run would read.
import { CliError } from './errors';

export async function describeParquet(
  root: string,
  opts: { json: boolean; glob?: string; share?: { rank: number; world: number } },
): Promise<number> {
  const tl = await import('../index');
  const table = await tl.data.openParquetTable(root, { pathGlobFilter: opts.glob }).catch((err: Error) => {
    throw new CliError(`cannot read the table ${root}: ${err.message}`);
  });
  const d = tl.data.describeTable(table);
  let mine: number[] | undefined;
  if (opts.share) {
    const plan = tl.data.planRanks(table.rowGroups, opts.share.world);
    mine = plan[opts.share.rank];
  }
  const groups = (mine ?? table.rowGroups.map((g) => g.id)).map((id) => table.rowGroups[id]);
  const str = (v: unknown) => (typeof v === 'bigint' ? String(v) : v instanceof Date ? v.toISOString() : v);
  if (opts.json) {
    const out = {
      ...d,
      partitions: d.partitions.map((p) => ({
        ...p,
        values: Object.fromEntries(Object.entries(p.values).map(([k, x]) => [k, str(x)])),
      })),
      ...(opts.share ? { rank: opts.share.rank, worldSize: opts.share.world } : {}),
      rowGroupList: groups.map((g) => ({
        file: table.files[g.file].path,
        index: g.index,
        rows: g.rows,
        bytes: g.bytes,
        firstRow: g.firstRow,
      })),
    };
    process.stdout.write(JSON.stringify(out) + '\n');
    return 0;
  }
  const w = (s: string, n: number) => s.padStart(n);
  process.stdout.write(`${d.root}: Spark ${d.kind} table${d.sparkVersion ? ` (Spark ${d.sparkVersion})` : ''}\n`);
  process.stdout.write(
    `partition columns: ${d.partitionColumns.map((c) => `${c.name} ${c.type}`).join(', ') || 'none'}\n`,
  );
  process.stdout.write(`${'partition'.padEnd(24)} ${w('files', 6)} ${w('row groups', 10)} ${w('rows', 10)}\n`);
  for (const p of d.partitions) {
    const name =
      Object.entries(p.values)
        .map(([k, x]) => `${k}=${str(x)}`)
        .join('/') || '(none)';
    process.stdout.write(
      `${name.padEnd(24)} ${w(String(p.files), 6)} ${w(String(p.rowGroups), 10)} ${w(String(p.rows), 10)}\n`,
    );
  }
  if (mine) {
    const rows = groups.reduce((n, g) => n + g.rows, 0);
    process.stdout.write(
      `rank ${opts.share!.rank} of ${opts.share!.world}: ${groups.length} row groups, ${rows} rows\n`,
    );
    for (const g of groups)
      process.stdout.write(`  ${table.files[g.file].path} row group ${g.index}: ${g.rows} rows, ${g.bytes} bytes\n`);
  }
  process.stdout.write(`${d.files} files, ${d.rowGroups} row groups, ${d.rows} rows, ${d.bytes} bytes\n`);
  return 0;
}
