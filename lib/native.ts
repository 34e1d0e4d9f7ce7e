// The one place that loads the native addon. Everything else imports `binding`.
// The addon is not API (lib/index.ts is): some exports exist only for tests and
// benches and nothing public re-exports them: data.decodeJpeg, data.sniffJpeg
// and data.planGeometry (decoder and crop-geometry checks against PIL and
// torchvision), data.decodeBench (bench/dataloader.mjs), batchNormActForTest,
// setFusedNorm and fusedNormEnabled (the fused BatchNorm kernels against ATen's).
import { packageRoot } from './paths';

function load(): any {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build');
  try {
    return nodeGypBuild(packageRoot);
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    // One line, so the CLI can print it as is: what failed, then what to do.
    const e = new Error(
      `cannot load the native addon (${reason}); point it at your LibTorch (README "LibTorch": ` +
        'LD_LIBRARY_PATH=<torch>/lib, or `npm rebuild torchline` with LIBTORCH_USE_PYTORCH=1 LIBTORCH_PYTHON=<python with torch>)',
      { cause: err },
    ) as NodeJS.ErrnoException;
    e.code = 'ERR_TORCHLINE_ADDON';
    throw e;
  }
}

/** @internal The addon's exports (untyped: lib/ wraps each in a typed API). */
export const binding = load();
