// A self-contained HTML report of a run: training curves drawn as inline SVG
// (no scripts, no network), readable offline and attachable to a ticket.
import * as fs from 'node:fs';

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  trainTop1: number;
  trainTop5: number;
  valLoss?: number;
  valTop1?: number;
  valTop5?: number;
  lr: number;
  imgPerSec: number;
  seconds: number;
}

export interface ReportInput {
  title: string;
  epochs: EpochRecord[];
  steps: { step: number; loss: number }[];
  facts: Record<string, string | number>;
  perClass?: { name: string; accuracy: number; total: number }[];
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

function chart(
  title: string,
  series: Series[],
  opts: { yMin?: number; yMax?: number; percent?: boolean } = {},
): string {
  const W = 460;
  const H = 240;
  const L = 52;
  const R = 12;
  const T = 28;
  const B = 34;
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  if (all.length === 0) return `<figure class="chart"><figcaption>${esc(title)}</figcaption><p>no data</p></figure>`;
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  let y0 = opts.yMin ?? Math.min(...ys);
  let y1 = opts.yMax ?? Math.max(...ys);
  if (y1 === y0) {
    y0 -= 1;
    y1 += 1;
  }
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const fmt = (v: number) =>
    opts.percent ? `${(v * 100).toFixed(0)}%` : Math.abs(v) < 0.01 && v !== 0 ? v.toExponential(1) : v.toPrecision(3);
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => {
      const v = y0 + f * (y1 - y0);
      return `<line x1="${L}" x2="${W - R}" y1="${sy(v)}" y2="${sy(v)}" class="grid"/><text x="${L - 6}" y="${sy(v) + 4}" text-anchor="end">${fmt(v)}</text>`;
    })
    .join('');
  const lines = series
    .map((s) => {
      const pts = s.points.filter(([, y]) => Number.isFinite(y));
      const d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
      const dots =
        pts.length <= 60
          ? pts
              .map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`)
              .join('')
          : '';
      return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>${dots}`;
    })
    .join('');
  const legend = series
    .map(
      (s, i) =>
        `<rect x="${L + i * 120}" y="8" width="10" height="10" fill="${s.color}"/><text x="${L + 14 + i * 120}" y="17">${esc(s.name)}</text>`,
    )
    .join('');
  const xlabels = `<text x="${L}" y="${H - 10}">${x0}</text><text x="${W - R}" y="${H - 10}" text-anchor="end">${x1}</text>`;
  return `<figure class="chart"><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${grid}${lines}${legend}${xlabels}</svg></figure>`;
}

export function renderReport(r: ReportInput): string {
  const e = r.epochs;
  const ep = (f: (x: EpochRecord) => number | undefined): [number, number][] => e.map((x) => [x.epoch, f(x) ?? NaN]);
  const charts = [
    chart('Loss per step', [{ name: 'train loss', color: '#2563eb', points: r.steps.map((s) => [s.step, s.loss]) }]),
    chart('Loss per epoch', [
      { name: 'train', color: '#2563eb', points: ep((x) => x.trainLoss) },
      { name: 'validation', color: '#dc2626', points: ep((x) => x.valLoss) },
    ]),
    chart(
      'Top-1 accuracy',
      [
        { name: 'train', color: '#2563eb', points: ep((x) => x.trainTop1) },
        { name: 'validation', color: '#dc2626', points: ep((x) => x.valTop1) },
      ],
      { yMin: 0, yMax: 1, percent: true },
    ),
    chart('Learning rate', [{ name: 'lr', color: '#059669', points: ep((x) => x.lr) }]),
    chart('Throughput (img/s)', [{ name: 'train img/s', color: '#7c3aed', points: ep((x) => x.imgPerSec) }], {
      yMin: 0,
    }),
  ].join('\n');
  const pct = (v?: number) => (v === undefined ? '–' : `${(v * 100).toFixed(2)}%`);
  const rows = e
    .map(
      (x) =>
        `<tr><td>${x.epoch}</td><td>${x.trainLoss.toFixed(4)}</td><td>${pct(x.trainTop1)}</td><td>${x.valLoss?.toFixed(4) ?? '–'}</td><td>${pct(x.valTop1)}</td><td>${pct(x.valTop5)}</td><td>${x.lr.toExponential(2)}</td><td>${x.imgPerSec.toFixed(1)}</td><td>${x.seconds.toFixed(1)}</td></tr>`,
    )
    .join('');
  const facts = Object.entries(r.facts)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(String(v))}</td></tr>`)
    .join('');
  const perClass = r.perClass
    ? `<h2>Per-class validation accuracy</h2><table><tr><th>class</th><th>accuracy</th><th>images</th></tr>${r.perClass
        .map((c) => `<tr><td>${esc(c.name)}</td><td>${pct(c.accuracy)}</td><td>${c.total}</td></tr>`)
        .join('')}</table>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
svg text{font-size:11px;fill:#333}.grid{stroke:#eee}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f6f6f6}
</style></head><body>
<h1>${esc(r.title)}</h1>
<table>${facts}</table>
<h2>Training curves</h2>
<div class="charts">
${charts}
</div>
<h2>Epochs</h2>
<table><tr><th>epoch</th><th>train loss</th><th>train top-1</th><th>val loss</th><th>val top-1</th><th>val top-5</th><th>lr</th><th>img/s</th><th>seconds</th></tr>${rows}</table>
${perClass}
</body></html>
`;
}

export function writeReport(file: string, r: ReportInput): void {
  fs.writeFileSync(file, renderReport(r));
}
