// `torchline doctor`: what this installation found, and why CUDA is or is not usable.
import type { Command } from './types';

const doctor: Command = {
  usage: 'Usage: torchline doctor [--json]\n\n  --json   print the facts as one JSON object',
  options: { json: { type: 'boolean' } },
  async run(values) {
    const { version, cuda, defaultDevice, memoryStats } = await import('../runtime');
    const { resolvePrecision, CPU_BF16_MIN_IMAGE_SIZE } = await import('../train/precision');
    const { binding } = await import('../native');
    const v = version();
    const auto = resolvePrecision('auto', defaultDevice());
    const caps = binding.cpuCapabilities();
    const features = ['avx2', 'avx512_f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_tile'].filter((k) => caps[k]);
    if (values.json) {
      process.stdout.write(
        JSON.stringify({
          ...v,
          cudaStatus: cuda.explain(),
          defaultDevice: defaultDevice().toString(),
          cpuFeatures: features,
          cpuCapability: caps.capability,
          precisionAuto: auto,
          cpuAllocator: memoryStats().installed ? 'caching' : 'system',
        }) + '\n',
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
      `C++ standard   ${v.cxxStandard}`,
      `CUDA           compiled ${v.cuda.compiled ? 'yes' : 'no'}; ${cuda.explain()}${v.nccl ? '; NCCL compiled' : ''}`,
      `CPU            ${caps.capability} kernels; ${features.join(', ') || 'no AVX features reported'}`,
      `precision auto ${auto.precision}${auto.channelsLast ? ' + channels_last' : ''} (${auto.reason})` +
        (auto.precision === 'bf16' && defaultDevice().type === 'cpu'
          ? `; fp32 for images under ${CPU_BF16_MIN_IMAGE_SIZE} px`
          : ''),
      `CPU allocator  ${memoryStats().installed ? "torchline caching allocator (TORCHLINE_CPU_ALLOCATOR=system for LibTorch's own)" : "LibTorch's own"}`,
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
