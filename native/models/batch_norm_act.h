// Training-mode BatchNorm fused with what follows it in a ResNet block: the
// ReLU, or the residual add and the ReLU. Eager PyTorch runs these as
// separate kernels that each read and write the whole activation; here the
// forward reads x once for the statistics and once to write the output, and
// the backward reads the incoming gradient and x twice, recomputing the ReLU
// mask from x instead of reading the output where it can. On a memory-bound
// CPU step that is most of the time these layers take.
//
// Channels-last (NHWC) contiguous activations only: a tensor is `rows`
// (N*H*W) rows of C channels. Arithmetic is float32 whatever the storage
// type; sums over rows go through float32 blocks into float64.
//
// This header and batch_norm_act.plain.cc are torch-free (the kernels work
// on row ranges; fused_norm.cc splits rows over LibTorch's threads and wires
// them into autograd).
#pragma once
#include <cstdint>

namespace tl::bnact {

// Element type of the activations: float32, or bfloat16 as raw bits.
enum class Type { F32, BF16 };

// Which elements of the incoming gradient pass the ReLU in the backward.
//   None:      all (no ReLU, or the gradient was masked already)
//   Recompute: where x*scale + shift > 0 (BN + ReLU: the output is not read)
//   Output:    where out > 0 (BN + add + ReLU: the pre-activation needs the residual)
enum class Mask { None, Recompute, Output };

// Adds, per channel, the sum of (x - center) and of its square over `rows` rows
// to sum[C] and sumSq[C]. Centering on a value near the mean keeps
// E[d^2] - E[d]^2 accurate.
void accumulateStats(Type t, const void* x, int64_t rows, int64_t C, const float* center, double* sum, double* sumSq);

// y = x*scale[c] + shift[c] (+ residual when not null), then ReLU when relu.
// A NaN stays NaN through the ReLU, as in torch.relu.
void normalize(Type t, const void* x, const void* residual, void* y, int64_t rows, int64_t C, const float* scale,
               const float* shift, bool relu);

// Per-channel parameters of the backward, all float32 [C].
struct BackwardParams {
  const float* mean;   // batch mean
  const float* scale;  // weight * invstd (also the factor of the input gradient)
  const float* shift;  // bias - mean * scale (with scale: the forward's affine map, for Mask::Recompute)
  const float* gradMean;  // sum(g) / n
  const float* gradProj;  // sum(g * (x - mean)) * invstd^2 / n
};

// First backward pass: g = dy masked; sumG[c] += g and sumGX[c] += g*(x - mean)
// over `rows` rows; g is also stored into gOut when it is not null (the
// residual's gradient). `out` is read only for Mask::Output.
void backwardReduce(Type t, const void* dy, const void* x, const void* out, void* gOut, int64_t rows, int64_t C,
                    Mask mask, const BackwardParams& p, double* sumG, double* sumGX);

// Second backward pass: dx = scale * (g - gradMean - (x - mean) * gradProj),
// g = dy masked as in backwardReduce.
void backwardInput(Type t, const void* dy, const void* x, const void* out, void* dx, int64_t rows, int64_t C,
                   Mask mask, const BackwardParams& p);

}  // namespace tl::bnact
