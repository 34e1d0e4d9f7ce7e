// Training from a Spark table reaches the accuracy of training from the same
// images in class folders: Fashion-MNIST (Debian's dataset-fashion-mnist)
// JPEGs as an ImageFolder, as a binaryFile table and as an image table
// (pixels decoded by the Python peer), ResNet18 at 32 px for 2 epochs.
//
// All three runs visit the same images in the same batches (the table runs
// get the folder's shuffled order mapped onto their rows) with deterministic
// transforms, so any gap comes from the data path alone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Adam,
  DataLoader,
  ImageFolder,
  ParquetImageDataset,
  Trainer,
  manualSeed,
  resnet18,
  transforms as T,
} from '../../lib';
import { RandomSampler, type Dataset, type Sampler } from '../../lib/data';
import { writeFashionMnistFolder as writeImageFolder } from '../../lib/data/fashion-mnist';
import { makeTable, tmpDir } from './helpers';

const TRANSFORM = [T.Resize([32, 32]), T.Normalize([0.286, 0.286, 0.286], [0.353, 0.353, 0.353])];
const EPOCHS = 2;
let root: string;
let folder: { train: ImageFolder; test: ImageFolder };

beforeAll(async () => {
  root = tmpDir('pq-train');
  await writeImageFolder('train', path.join(root, 'train'), 40);
  await writeImageFolder('t10k', path.join(root, 'test'), 20);
  folder = {
    train: new ImageFolder(path.join(root, 'train'), { transform: TRANSFORM }),
    test: new ImageFolder(path.join(root, 'test'), { transform: TRANSFORM }),
  };
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** The folder's images as a table: `label=<class index>/` partitions. Returns folder index -> table row. */
function tableOf(ds: ImageFolder, kind: 'image' | 'binaryFile', out: string): number[] {
  const rows = ds.samples.map(([file, label]) => ({ file, label }));
  const w = makeTable({ out, kind, rowGroupRows: 50, rows });
  const rowOf = new Array<number>(rows.length);
  w.order.forEach((specIndex, tableRow) => (rowOf[specIndex] = tableRow));
  return rowOf;
}

/** A sampler over the table that yields the rows of the folder sampler's images, in its order. */
function mapped(base: Sampler, rowOf: number[]): Sampler {
  return { length: base.length, indices: (epoch) => Int32Array.from(base.indices(epoch), (i) => rowOf[i]) };
}

async function train(
  trainSet: Dataset,
  testSet: Dataset,
  trainSampler: Sampler,
  testSampler: Sampler,
): Promise<number> {
  manualSeed(0);
  const model = resnet18({ numClasses: 10 });
  const fit = await new Trainer().fit({
    model,
    optimizer: new Adam(model.parameters(), { lr: 2e-3 }),
    train: new DataLoader(trainSet, { batchSize: 32, sampler: trainSampler, transform: TRANSFORM }),
    val: new DataLoader(testSet, { batchSize: 100, sampler: testSampler, transform: TRANSFORM }),
    epochs: EPOCHS,
    checkpointEvery: 0,
    progress: null,
  });
  return fit.history.at(-1)!.valTop1;
}

describe('training from Spark tables', () => {
  it('binaryFile and image tables train ResNet18 to the ImageFolder accuracy (within 1 point)', async () => {
    const order = new RandomSampler(folder.train.length, 11);
    const inOrder = {
      length: folder.test.length,
      indices: () => Int32Array.from({ length: folder.test.length }, (_, i) => i),
    };
    const ref = await train(folder.train, folder.test, order, inOrder);
    expect(ref).toBeGreaterThan(0.3); // it learned something: 10 classes, chance is 0.1

    for (const kind of ['binaryFile', 'image'] as const) {
      const rowTrain = tableOf(folder.train, kind, path.join(root, `${kind}-train`));
      const rowTest = tableOf(folder.test, kind, path.join(root, `${kind}-test`));
      const opts = { maxResidentRowGroups: 16 };
      const trainSet = await ParquetImageDataset.open(path.join(root, `${kind}-train`), opts);
      const testSet = await ParquetImageDataset.open(path.join(root, `${kind}-test`), opts);
      expect(trainSet.classes).toHaveLength(10);
      const acc = await train(trainSet, testSet, mapped(order, rowTrain), mapped(inOrder, rowTest));
      console.log(`${kind} table: top-1 ${(acc * 100).toFixed(2)}% vs ImageFolder ${(ref * 100).toFixed(2)}%`);
      expect(Math.abs(acc - ref), `${kind}: ${acc} vs ImageFolder ${ref}`).toBeLessThanOrEqual(0.01);
    }
  }, 300_000); // three ResNet18 trainings: a busy or slow machine needs more than the default 120 s
});
