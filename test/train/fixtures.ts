// Small real datasets for Trainer/CLI tests: Fashion-MNIST images from Debian's package.
import * as path from 'node:path';
import { writeFashionMnistFolder } from '../../lib/data/fashion-mnist';
import { tempDir } from '../support/peer';

/** root/{train,val}/<class>/*.jpg with `perClass` train and `valPerClass` held-out images. */
export async function fashionFolders(
  perClass: number,
  valPerClass: number,
): Promise<{ root: string; train: string; val: string }> {
  const root = tempDir('fmnist');
  const train = path.join(root, 'train');
  const val = path.join(root, 'val');
  await writeFashionMnistFolder('train', train, perClass);
  await writeFashionMnistFolder('t10k', val, valPerClass);
  return { root, train, val };
}
