// The CLI on Spark tables: `torchline list` describes one (kind, partitions,
// row groups, rows, a rank's share), and `torchline train --data-format
// parquet` trains from one end to end.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTable, photos, tmpDir } from './helpers';

const CLI = path.resolve(__dirname, '../../dist/cli.js');
let dir: string;

function cli(args: string[]): { code: number; out: string } {
  try {
    return {
      code: 0,
      out: execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    };
  } catch (e) {
    const err = e as { status: number; stderr: string; stdout: string };
    return { code: err.status, out: err.stdout + err.stderr };
  }
}

beforeAll(() => {
  dir = tmpDir('pq-cli');
  const rows = photos()
    .slice(0, 24)
    .map((file, i) => ({ file, label: i % 2 }));
  makeTable({ out: path.join(dir, 'train'), kind: 'binaryFile', rowGroupRows: 5, filesPerPartition: 2, rows });
  makeTable({
    out: path.join(dir, 'val'),
    kind: 'image',
    rowGroupRows: 4,
    rows: rows.slice(0, 8),
    compression: 'zstd',
  });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('torchline CLI on Parquet tables', () => {
  it("list describes a table: kind, partitions, row groups, rows, and one rank's row groups", () => {
    const r = cli(['list', path.join(dir, 'train')]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Spark binaryFile table \(Spark 3\.5\.1\)/);
    expect(r.out).toMatch(/partition columns: label int/);
    expect(r.out).toMatch(/label=0\s+2\s+4\s+12/);
    expect(r.out).toMatch(/4 files, 8 row groups, 24 rows/);
    const j = JSON.parse(cli(['list', path.join(dir, 'train'), '--json', '--rank', '1', '--world-size', '2']).out);
    expect(j).toMatchObject({ kind: 'binaryFile', files: 4, rowGroups: 8, rows: 24, rank: 1, worldSize: 2 });
    expect(j.rowGroupList.reduce((n: number, g: { rows: number }) => n + g.rows, 0)).toBe(12);
  });

  it('train --data-format parquet trains and evaluates from tables', () => {
    const r = cli([
      'train',
      '--data-format',
      'parquet',
      '--train-dir',
      path.join(dir, 'train'),
      '--val-dir',
      path.join(dir, 'val'),
      '--model',
      'resnet18',
      '--image-size',
      '32',
      '--epochs',
      '1',
      '--batch-size',
      '8',
      '--checkpoint-every',
      '0',
      '--checkpoint-dir',
      path.join(dir, 'ck'),
      '--log-dir',
      path.join(dir, 'runs'),
      '--augment',
      'none',
    ]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/accuracy [\d.]+% top-1, [\d.]+% top-5 on 8 validation images/);
    const bad = cli(['train', '--data-format', 'csv']);
    expect(bad.code).toBe(2);
    expect(bad.out).toMatch(/--data-format must be folder or parquet/);
  });
});
