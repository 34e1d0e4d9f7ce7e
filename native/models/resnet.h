// torchvision's ResNet (v1.5: the stride sits on the 3x3 conv) with
// torchvision's module names, so state_dict keys match 1:1
// (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, fc, ...).
#pragma once
#include <torch/torch.h>

namespace tl {

// BatchNorm2d whose training-mode forward can be handed to another function:
// a process group sets `sync` for SyncBatchNorm (statistics over every rank's
// batch). Same parameters, buffers and names as torch::nn::BatchNorm2d.
struct Norm2dImpl : torch::nn::BatchNorm2dImpl {
  using torch::nn::BatchNorm2dImpl::BatchNorm2dImpl;
  torch::Tensor forward(const torch::Tensor& x) { return forwardWith(x, torch::Tensor(), false); }
  // relu(bn(x) + residual), with the add only when residual is defined and the
  // ReLU only when `relu`. Training on CPU in channels-last takes the fused
  // kernels (models/fused_norm.h); otherwise ATen's ops, the add and ReLU in
  // place on BN's output as torchvision's `out += identity; relu(inplace)`.
  torch::Tensor forwardWith(const torch::Tensor& x, const torch::Tensor& residual, bool relu);
  std::function<torch::Tensor(torch::nn::BatchNorm2dImpl&, const torch::Tensor&)> sync;
};
TORCH_MODULE(Norm2d);

struct ResNetOptions {
  int depth = 50;  // 18, 34, 50, 101, 152
  int64_t numClasses = 1000;
  bool zeroInitResidual = false;
};

struct BasicBlockImpl : torch::nn::Module {
  static constexpr int64_t expansion = 1;
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential downsample);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  Norm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

struct BottleneckImpl : torch::nn::Module {
  static constexpr int64_t expansion = 4;
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential downsample);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  Norm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

struct ResNetImpl : torch::nn::Module {
  explicit ResNetImpl(const ResNetOptions& options);
  torch::Tensor forward(torch::Tensor x);
  // Swaps `fc` for a freshly initialised Linear with `numClasses` outputs
  // (the seed's `model.fc = nn.Linear(model.fc.in_features, n)`).
  void replaceHead(int64_t numClasses);
  int64_t numClasses() const { return fc->options.out_features(); }

  ResNetOptions options;
  torch::nn::Conv2d conv1{nullptr};
  Norm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(ResNet);

}  // namespace tl
