// SyncBatchNorm for data-parallel training: BatchNorm in training mode with
// the mean and variance of the union of every rank's batch.
#pragma once
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <chrono>

#include "common.h"

namespace tl {

// Normalises `x` [N, C, H, W] with `bn`'s affine parameters and statistics
// all-reduced over `pg`, and updates bn's running statistics with them, as
// torch.nn.SyncBatchNorm does; the backward pass all-reduces its two
// per-channel sums. Every rank must call it for the same layers in the same
// order (they do: the same model runs the same forward on every rank).
torch::Tensor syncBatchNorm(const c10::intrusive_ptr<c10d::ProcessGroup>& pg, std::chrono::milliseconds timeout,
                            torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x);

}  // namespace tl
