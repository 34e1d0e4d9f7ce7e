// Shared benchmark data: an ImageNet-like folder of ~500x375 baseline JPEGs
// (quality 95, 4:2:0, as ImageNet's) cut from Debian's opencv-doc photos.
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';

export const PHOTOS = '/usr/share/doc/opencv-doc/examples/data';

/** Deterministic: the same files for the same (nFiles, classes); reused when already complete. */
export async function makeImagenetLike(dir, nFiles, classes = 8) {
  const stamp = path.join(dir, `.complete-${nFiles}-${classes}-v3`);
  if (fs.existsSync(stamp)) return dir;
  fs.rmSync(dir, { recursive: true, force: true });
  const photos = fs
    .readdirSync(PHOTOS)
    .filter((f) => f.endsWith('.jpg'))
    .sort();
  let rnd = 12345;
  const rand = () => (rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < nFiles; i++) {
    const src = path.join(PHOTOS, photos[i % photos.length]);
    const meta = await sharp(src).metadata();
    const portrait = rand() < 0.25;
    const [w, h] = portrait ? [375, 500] : [500, 375];
    // A random crop with the target's aspect, then resized (mostly a downscale, as ImageNet photos are).
    const scale = 0.85 + 0.15 * rand();
    let cw = Math.floor(meta.width * scale);
    let ch = Math.floor((cw * h) / w);
    if (ch > meta.height) [ch, cw] = [meta.height, Math.floor((meta.height * w) / h)];
    const left = Math.floor(rand() * (meta.width - cw + 1));
    const top = Math.floor(rand() * (meta.height - ch + 1));
    const cls = `n0${1440764 + (i % classes)}`;
    fs.mkdirSync(path.join(dir, cls), { recursive: true });
    await sharp(src)
      .extract({ left, top, width: cw, height: ch })
      .resize(w, h)
      .jpeg({ quality: 95, chromaSubsampling: '4:2:0' })
      .toFile(path.join(dir, cls, `${cls}_${i}.JPEG`));
  }
  fs.writeFileSync(stamp, '');
  return dir;
}
