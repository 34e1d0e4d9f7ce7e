import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { writeReport } from '../../lib';
import { tempDir } from '../support/peer';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe('HTML report', () => {
  it('renders in headless Chromium with its charts (screenshot checked for drawn curves)', async () => {
    const dir = tempDir('report');
    const file = path.join(dir, 'report.html');
    const epochs = Array.from({ length: 6 }, (_, i) => ({
      epoch: i + 1,
      trainLoss: 2 / (i + 1),
      trainTop1: 0.4 + i * 0.08,
      trainTop5: 0.9,
      valLoss: 2.2 / (i + 1),
      valTop1: 0.35 + i * 0.08,
      valTop5: 0.9,
      lr: 1e-3 * 0.5 ** i,
      imgPerSec: 140 + i,
      seconds: 70,
    }));
    writeReport(file, {
      title: 'report test',
      epochs,
      steps: Array.from({ length: 120 }, (_, i) => ({ step: i + 1, loss: 2.5 * Math.exp(-i / 40) })),
      facts: { device: 'cpu', '<script>': 'escaped' },
      perClass: [{ name: 'Bag', accuracy: 0.9, total: 10 }],
    });
    const html = fs.readFileSync(file, 'utf8');
    expect(html).not.toMatch(/<script|https?:\/\//); // self-contained: no scripts, no network
    const dom = execFileSync(
      CHROMIUM,
      [...FLAGS, `--user-data-dir=${path.join(dir, 'profile')}`, '--dump-dom', `file://${file}`],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect((dom.match(/<svg/g) ?? []).length).toBe(5);
    expect(dom).toMatch(/Per-class validation accuracy/);
    const png = path.join(dir, 'shot.png');
    execFileSync(
      CHROMIUM,
      [
        ...FLAGS,
        `--user-data-dir=${path.join(dir, 'profile2')}`,
        `--screenshot=${png}`,
        '--window-size=1200,900',
        `file://${file}`,
      ],
      { timeout: 60_000, stdio: 'ignore' },
    );
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(info.width).toBe(1200);
    // Curves are drawn in saturated colours: count clearly blue pixels (#2563eb) of the loss lines.
    let blue = 0;
    for (let i = 0; i < data.length; i += info.channels)
      if (data[i] < 80 && data[i + 2] > 200 && data[i + 1] < 130) blue++;
    expect(blue).toBeGreaterThan(200);
  });
});
