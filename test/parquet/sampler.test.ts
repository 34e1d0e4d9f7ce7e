// The row-group read plan: rank shares, the windowed shuffle, and the
// reader's memory bound, on synthetic row-group layouts (seeded; the seed is
// printed on failure).
import { describe, expect, it } from 'vitest';
import { planRanks, RowGroupSampler } from '../../lib/data';

const SEED = Number(process.env.TEST_SEED ?? 20260);

function layout(seed: number, n: number): { firstRow: number; rows: number }[] {
  let a = seed >>> 0;
  const rand = () => (a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const out: { firstRow: number; rows: number }[] = [];
  let first = 0;
  for (let i = 0; i < n; i++) {
    const rows = 1 + Math.floor(rand() * 40);
    out.push({ firstRow: first, rows });
    first += rows;
  }
  return out;
}

describe(`RowGroupSampler (seed ${SEED})`, () => {
  const groups = layout(SEED, 37);
  const total = groups.reduce((n, g) => n + g.rows, 0);
  const groupOf = (row: number) => groups.findIndex((g) => row >= g.firstRow && row < g.firstRow + g.rows);

  it('splits whole row groups among ranks, the same plan whoever computes it, balanced by rows', () => {
    for (const world of [1, 2, 3, 8]) {
      const plan = planRanks(groups, world);
      expect(planRanks([...groups], world)).toEqual(plan);
      expect(plan.flat().sort((a, b) => a - b)).toEqual(groups.map((_, i) => i));
      const rows = plan.map((s) => s.reduce((n, g) => n + groups[g].rows, 0));
      expect(Math.max(...rows) - Math.min(...rows)).toBeLessThanOrEqual(40);
    }
    expect(() => new RowGroupSampler(groups.slice(0, 2), { worldSize: 3, rank: 0 })).toThrow(
      /cannot be shared by 3 ranks/,
    );
  });

  it('every rank yields the same count; together they cover every row (padding repeats the tail)', () => {
    const world = 3;
    const samplers = Array.from(
      { length: world },
      (_, rank) => new RowGroupSampler(groups, { worldSize: world, rank, shuffle: true, seed: SEED }),
    );
    const lens = samplers.map((s) => s.length);
    expect(new Set(lens).size).toBe(1);
    const seen = new Set<number>();
    for (const s of samplers) {
      const idx = s.indices(0);
      expect(idx.length).toBe(s.length);
      idx.forEach((i) => seen.add(i));
      // a rank only reads its own row groups
      for (const i of idx) expect(s.groups).toContain(groupOf(i));
    }
    expect(seen.size).toBe(total);
    const dropped = Array.from(
      { length: world },
      (_, rank) => new RowGroupSampler(groups, { worldSize: world, rank, dropLast: true }),
    );
    expect(new Set(dropped.map((s) => s.indices(0).length)).size).toBe(1);
  });

  it('shuffles rows only within windows of shuffleBuffer row groups, seeded per epoch', () => {
    const s = new RowGroupSampler(groups, { shuffle: true, seed: SEED, shuffleBuffer: 4 });
    const e0 = Array.from(s.indices(0));
    expect(Array.from(s.indices(0))).toEqual(e0);
    expect(Array.from(s.indices(1))).not.toEqual(e0);
    expect([...e0].sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(e0).not.toEqual([...e0].sort((a, b) => a - b));
    // Walk the order window by window: each window's rows come from exactly 4 row groups, all of their rows.
    let pos = 0;
    while (pos < e0.length) {
      const gs = new Set<number>();
      let need = 0;
      while (gs.size < 4 && pos + need < e0.length) {
        const g = groupOf(e0[pos + need]);
        if (!gs.has(g)) gs.add(g);
        need++;
      }
      const rows = [...gs].reduce((n, g) => n + groups[g].rows, 0);
      const window = e0.slice(pos, pos + rows);
      for (const r of window) expect(gs.has(groupOf(r)), `row ${r} outside its window`).toBe(true);
      pos += rows;
    }
    // Without shuffle: the table's order.
    expect(Array.from(new RowGroupSampler(groups).indices(3))).toEqual(Array.from({ length: total }, (_, i) => i));
  });
});
