// Datasets against torchvision's ImageFolder on the same tree, filename
// labels, label maps and manifests.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataLoader, ImageFiles, ImageFolder, ManifestDataset, data, transforms as T } from '../../lib';
import { collect, peer, photos, tmpDir } from './helpers';

const src = photos();

function tree(): string {
  const root = tmpDir('folder');
  const put = (rel: string, from = src[0]) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.copyFileSync(from, path.join(root, rel));
  };
  // Names chosen where Python's and naive orders could differ: case, digits,
  // punctuation vs '/', non-ASCII, nested folders, extensions in any case.
  put('b_class/img2.jpg');
  put('b_class/img10.JPEG');
  put('b_class/sub/z.png', src[1]);
  put('b_class/sub-dir/a.jpg');
  put('b_class/sub/deeper/q.JpG');
  put('B_upper/x.webp', src[2]);
  put('a_class/.hidden.jpg');
  put('a_class/readme.txt');
  put('a_class/photo.bmp', src[3]);
  put('ünïcode/α.jpg');
  put('a_class/Ω.jpeg');
  fs.writeFileSync(path.join(root, 'a_class/notes.md'), 'not an image');
  fs.symlinkSync(path.join(root, 'b_class/sub'), path.join(root, 'linked'), 'dir');
  return root;
}

describe('ImageFolder', () => {
  it("equals torchvision's classes, class_to_idx and samples on the same tree", () => {
    const root = tree();
    const ours = new ImageFolder(root);
    const theirs = JSON.parse(peer('imagefolder', root));
    expect(ours.classes).toEqual(theirs.classes);
    expect(ours.classToIdx).toEqual(theirs.class_to_idx);
    expect(ours.samples).toEqual(theirs.samples);
    expect(ours.length).toBe(theirs.samples.length);
    expect(ours.getItem(0)).toEqual({ source: theirs.samples[0][0], label: theirs.samples[0][1] });
  });

  it('refuses a class folder without images, as torchvision does', () => {
    const root = tmpDir('empty');
    fs.mkdirSync(path.join(root, 'cls'));
    fs.writeFileSync(path.join(root, 'cls', 'a.txt'), 'x');
    expect(() => new ImageFolder(root)).toThrow(/Found no valid file for the classes cls/);
    expect(() => new ImageFolder(path.join(root, 'missing'))).toThrow(/not a directory/);
  });
});

describe('labels from file names and label maps', () => {
  const root = tmpDir('imagenet');
  const names = ['n01440764_10026.JPEG', 'n01443537_2.JPEG', 'n01440764_7.JPEG', 'n01484850_1.JPEG'];
  for (const n of names) fs.copyFileSync(src[0], path.join(root, n));
  const map = path.join(root, 'LOC_synset_mapping.txt');
  fs.writeFileSync(
    map,
    'n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n\nn01484850 great white shark\n',
  );

  it('derives ImageNet labels with a regex and a synset file', () => {
    const ds = new ImageFiles(root, { label: /^(n\d{8})_/, classes: map });
    expect(ds.classes).toEqual(['n01440764', 'n01443537', 'n01484850']);
    const byName = Object.fromEntries(ds.files.map((f, i) => [path.basename(f), ds.labels[i]]));
    expect(byName).toEqual({
      'n01440764_10026.JPEG': 0,
      'n01443537_2.JPEG': 1,
      'n01440764_7.JPEG': 0,
      'n01484850_1.JPEG': 2,
    });
    const lm = data.readLabelMap(map);
    expect(lm.descriptions[1]).toBe('goldfish, Carassius auratus');
  });

  it('takes a function, sorts found labels without a map, and names unknown labels', () => {
    const ds = new ImageFiles(
      names.map((n) => path.join(root, n)),
      { label: (f) => path.basename(f).split('_')[0] },
    );
    expect(ds.classes).toEqual(['n01440764', 'n01443537', 'n01484850']);
    expect(ds.labels).toEqual([0, 1, 0, 2]);
    expect(() => new ImageFiles(root, { label: /^(n\d{8})_/, classes: ['n01440764'] })).toThrow(
      /n01443537.*not a known class/,
    );
    expect(() => new ImageFiles(root, { label: /^(x)_/ })).toThrow(/does not match/);
  });
});

describe('ManifestDataset', () => {
  it('loads { uri, label } rows and in-memory bytes to the same pixels', async () => {
    const rows = [
      { uri: src[5], label: 'cat' },
      { bytes: new Uint8Array(fs.readFileSync(src[5])), label: 'dog' },
      { uri: `file://${src[5]}`, label: 'cat' },
    ];
    const ds = new ManifestDataset(rows);
    expect(ds.classToIdx).toEqual({ cat: 0, dog: 1 });
    const [b] = await collect(new DataLoader(ds, { transform: T.imagenetEval(64), batchSize: 3, numWorkers: 2 }));
    expect(b.labels.toArray()).toEqual([0, 1, 0]);
    const a = b.images.toTypedArray() as Float32Array;
    const n = 3 * 64 * 64;
    expect(a.subarray(n, 2 * n)).toEqual(a.subarray(0, n));
    expect(a.subarray(2 * n)).toEqual(a.subarray(0, n));
    expect(() => new ManifestDataset([{ uri: 'gs://bucket/x.jpg', label: 0 }])).toThrow(/not local/);
  });
});
