// The ResNet family as data: the depths torchline builds and how to tell them
// apart from a state_dict's keys. Kept free of the addon so the CLI can check
// flags and name a checkpoint's architecture without loading LibTorch.

/** torchvision's ResNet depths, the one list every check uses. */
export const RESNET_DEPTHS = [18, 34, 50, 101, 152] as const;
export type ResNetDepth = (typeof RESNET_DEPTHS)[number];

// Residual blocks per stage (layer1..layer4) and block kind, per depth (torchvision's table).
const LAYOUT: Record<ResNetDepth, { blocks: number[]; bottleneck: boolean }> = {
  18: { blocks: [2, 2, 2, 2], bottleneck: false },
  34: { blocks: [3, 4, 6, 3], bottleneck: false },
  50: { blocks: [3, 4, 6, 3], bottleneck: true },
  101: { blocks: [3, 4, 23, 3], bottleneck: true },
  152: { blocks: [3, 8, 36, 3], bottleneck: true },
};

/**
 * The ResNet depth a torchvision-style state_dict holds, from its key names
 * (blocks per stage, and conv3 for bottleneck blocks); undefined when the keys
 * are not those of a torchvision ResNet.
 */
export function resnetDepthOf(keys: Iterable<string>): ResNetDepth | undefined {
  const blocks = [0, 0, 0, 0];
  let bottleneck = false;
  let stem = false;
  for (const k of keys) {
    if (k === 'conv1.weight') stem = true;
    const m = /^layer([1-4])\.(\d+)\.(conv\d)\.weight$/.exec(k);
    if (!m) continue;
    const s = Number(m[1]) - 1;
    blocks[s] = Math.max(blocks[s], Number(m[2]) + 1);
    if (m[3] === 'conv3') bottleneck = true;
  }
  if (!stem) return undefined;
  return RESNET_DEPTHS.find(
    (d) => LAYOUT[d].bottleneck === bottleneck && LAYOUT[d].blocks.every((n, i) => n === blocks[i]),
  );
}
