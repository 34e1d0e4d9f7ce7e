// Norm2d's training fast path on CPU: BatchNorm, the residual add and the
// ReLU of a ResNet block as one autograd node over the fused kernels of
// batch_norm_act.h. Same results as ATen's batch_norm + add_ + relu_ up to
// float32 rounding (the statistics are summed in another order); running
// statistics and num_batches_tracked are updated as BatchNorm2d does.
#pragma once
#include "common.h"

namespace tl {

// Whether fusedNorm can take this call: bn in training mode with affine
// parameters and running statistics (float32), x a CPU float32 or bfloat16
// tensor [N, C, H, W] in channels-last layout (and not also NCHW-contiguous,
// as when H*W == 1) with more than one value per channel, residual undefined
// or of x's shape, dtype and layout, and the fast path not switched off
// (setFusedNorm). Otherwise callers use ATen's ops.
bool fusedNormApplies(const torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x, const torch::Tensor& residual);

// relu(bn(x) + residual), with `+ residual` when it is defined and the ReLU
// when `relu`; differentiable in x, residual, bn.weight and bn.bias.
torch::Tensor fusedNorm(torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x, const torch::Tensor& residual,
                        bool relu);

// Process-wide switch (on by default), for comparing with ATen's kernels.
void setFusedNorm(bool enabled);
bool fusedNormEnabled();

void InitFusedNorm(Napi::Env env, Napi::Object exports);

}  // namespace tl
