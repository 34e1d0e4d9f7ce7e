// `torchline doctor`: what this installation found, and why CUDA is or is not usable.
import type { Command } from './types';

const doctor: Command = {
  usage: 'Usage: torchline doctor [--json]\n\n  --json   print the facts as one JSON object',
  options: { json: { type: 'boolean' } },
  async run(values) {
    const { version, cuda, defaultDevice } = await import('../runtime');
    const v = version();
    if (values.json) {
      process.stdout.write(
        JSON.stringify({ ...v, cudaStatus: cuda.explain(), defaultDevice: defaultDevice().toString() }) + '\n',
      );
      return 0;
    }
    const blasNote =
      v.blas.loaded && /libblas\.so|\/blas\//.test(v.blas.loaded) && !/openblas/.test(v.blas.loaded)
        ? '  (reference BLAS: install libopenblas0-pthread for ~30x faster matmuls)'
        : '';
    const lines = [
      `torchline      ${v.torchline}`,
      `LibTorch       ${v.libtorch}  (found via ${v.libtorchSource})`,
      `CXX11 ABI      ${v.cxx11Abi ? 'yes' : 'no'}`,
      `CUDA           ${cuda.explain()}`,
      `BLAS           compiled for ${v.blas.compiled || '?'}; loaded ${v.blas.loaded ?? 'none found'}${blasNote}`,
      `oneDNN         ${v.mkldnn ? 'yes' : 'no'}`,
      `threads        ${v.threads.intraOp} intra-op (cores available: ${v.threads.cores})`,
      `default device ${defaultDevice()}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

export default doctor;
