// ImageNet-1k weights of the ResNet family, transcribed from torchvision's
// tables (torchvision/models/resnet.py, ResNet18_Weights ... ResNet152_Weights,
// torchvision 0.29.1; https://github.com/pytorch/vision/blob/main/torchvision/models/resnet.py):
// URL (its file name carries the SHA-256 prefix), accuracy, size and the eval
// preset (V1: resize 256, V2: resize 232; crop 224, bilinear, antialiased).
// test/weights/table.test.ts compares every field with the installed torchvision.
import { IMAGENET_CATEGORIES } from './imagenet_categories';
import { defineWeights, type ImageClassificationPreset, type WeightsMeta } from './weights';

const MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const STD: [number, number, number] = [0.229, 0.224, 0.225];
const preset = (resizeSize: number): ImageClassificationPreset => ({
  resizeSize,
  cropSize: 224,
  mean: MEAN,
  std: STD,
  interpolation: 'bilinear',
});
const V1_RECIPE = 'https://github.com/pytorch/vision/tree/main/references/classification#resnet';

function entry(
  url: string,
  resize: number,
  m: { numParams: number; recipe: string; acc1: number; acc5: number; gflops: number; fileSizeMB: number },
) {
  const meta: WeightsMeta = {
    categories: IMAGENET_CATEGORIES,
    numParams: m.numParams,
    minSize: [1, 1],
    recipe: m.recipe,
    metrics: { dataset: 'ImageNet-1K', acc1: m.acc1, acc5: m.acc5 },
    gflops: m.gflops,
    fileSizeMB: m.fileSizeMB,
  };
  return { url, meta, preset: preset(resize) };
}

export const ResNet18_Weights = defineWeights(
  'ResNet18_Weights',
  'resnet18',
  {
    IMAGENET1K_V1: entry('https://download.pytorch.org/models/resnet18-f37072fd.pth', 256, {
      numParams: 11689512,
      recipe: V1_RECIPE,
      acc1: 69.758,
      acc5: 89.078,
      gflops: 1.814,
      fileSizeMB: 44.661,
    }),
  },
  'IMAGENET1K_V1',
);

export const ResNet34_Weights = defineWeights(
  'ResNet34_Weights',
  'resnet34',
  {
    IMAGENET1K_V1: entry('https://download.pytorch.org/models/resnet34-b627a593.pth', 256, {
      numParams: 21797672,
      recipe: V1_RECIPE,
      acc1: 73.314,
      acc5: 91.42,
      gflops: 3.664,
      fileSizeMB: 83.275,
    }),
  },
  'IMAGENET1K_V1',
);

export const ResNet50_Weights = defineWeights(
  'ResNet50_Weights',
  'resnet50',
  {
    IMAGENET1K_V1: entry('https://download.pytorch.org/models/resnet50-0676ba61.pth', 256, {
      numParams: 25557032,
      recipe: V1_RECIPE,
      acc1: 76.13,
      acc5: 92.862,
      gflops: 4.089,
      fileSizeMB: 97.781,
    }),
    IMAGENET1K_V2: entry('https://download.pytorch.org/models/resnet50-11ad3fa6.pth', 232, {
      numParams: 25557032,
      recipe: 'https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621',
      acc1: 80.858,
      acc5: 95.434,
      gflops: 4.089,
      fileSizeMB: 97.79,
    }),
  },
  'IMAGENET1K_V2',
);

export const ResNet101_Weights = defineWeights(
  'ResNet101_Weights',
  'resnet101',
  {
    IMAGENET1K_V1: entry('https://download.pytorch.org/models/resnet101-63fe2227.pth', 256, {
      numParams: 44549160,
      recipe: V1_RECIPE,
      acc1: 77.374,
      acc5: 93.546,
      gflops: 7.801,
      fileSizeMB: 170.511,
    }),
    IMAGENET1K_V2: entry('https://download.pytorch.org/models/resnet101-cd907fc2.pth', 232, {
      numParams: 44549160,
      recipe: 'https://github.com/pytorch/vision/issues/3995#new-recipe',
      acc1: 81.886,
      acc5: 95.78,
      gflops: 7.801,
      fileSizeMB: 170.53,
    }),
  },
  'IMAGENET1K_V2',
);

export const ResNet152_Weights = defineWeights(
  'ResNet152_Weights',
  'resnet152',
  {
    IMAGENET1K_V1: entry('https://download.pytorch.org/models/resnet152-394f9c45.pth', 256, {
      numParams: 60192808,
      recipe: V1_RECIPE,
      acc1: 78.312,
      acc5: 94.046,
      gflops: 11.514,
      fileSizeMB: 230.434,
    }),
    IMAGENET1K_V2: entry('https://download.pytorch.org/models/resnet152-f82ba261.pth', 232, {
      numParams: 60192808,
      recipe: 'https://github.com/pytorch/vision/issues/3995#new-recipe',
      acc1: 82.284,
      acc5: 96.002,
      gflops: 11.514,
      fileSizeMB: 230.474,
    }),
  },
  'IMAGENET1K_V2',
);
