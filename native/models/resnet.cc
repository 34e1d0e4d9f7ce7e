#include "models/resnet.h"

#include "models/fused_norm.h"

#include <stdexcept>

namespace tl {

namespace F = torch::nn::functional;

namespace {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

torch::nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

struct Layout {
  bool bottleneck;
  std::array<int64_t, 4> blocks;
};

Layout layoutFor(int depth) {
  switch (depth) {
    case 18: return {false, {2, 2, 2, 2}};
    case 34: return {false, {3, 4, 6, 3}};
    case 50: return {true, {3, 4, 6, 3}};
    case 101: return {true, {3, 4, 23, 3}};
    case 152: return {true, {3, 8, 36, 3}};
    default:
      throw std::invalid_argument("ResNet depth must be 18, 34, 50, 101 or 152, got " + std::to_string(depth));
  }
}

}  // namespace

torch::Tensor Norm2dImpl::forwardWith(const torch::Tensor& x, const torch::Tensor& residual, bool relu) {
  const bool synced = sync && is_training();
  if (!synced && fusedNormApplies(*this, x, residual)) return fusedNorm(*this, x, residual, relu);
  auto y = synced ? sync(*this, x) : torch::nn::BatchNorm2dImpl::forward(x);
  if (residual.defined()) y += residual;
  if (relu) y.relu_();
  return y;
}

BasicBlockImpl::BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential ds) {
  conv1 = register_module("conv1", conv3x3(inplanes, planes, stride));
  bn1 = register_module("bn1", Norm2d(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, 1));
  bn2 = register_module("bn2", Norm2d(planes));
  if (ds) downsample = register_module("downsample", ds);
}

torch::Tensor BasicBlockImpl::forward(torch::Tensor x) {
  auto identity = downsample ? downsample->forward(x) : x;
  auto out = bn1->forwardWith(conv1(x), {}, true);
  return bn2->forwardWith(conv2(out), identity, true);
}

BottleneckImpl::BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential ds) {
  conv1 = register_module("conv1", conv1x1(inplanes, planes));
  bn1 = register_module("bn1", Norm2d(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, stride));
  bn2 = register_module("bn2", Norm2d(planes));
  conv3 = register_module("conv3", conv1x1(planes, planes * expansion));
  bn3 = register_module("bn3", Norm2d(planes * expansion));
  if (ds) downsample = register_module("downsample", ds);
}

torch::Tensor BottleneckImpl::forward(torch::Tensor x) {
  auto identity = downsample ? downsample->forward(x) : x;
  auto out = bn1->forwardWith(conv1(x), {}, true);
  out = bn2->forwardWith(conv2(out), {}, true);
  return bn3->forwardWith(conv3(out), identity, true);
}

ResNetImpl::ResNetImpl(const ResNetOptions& opts) : options(opts) {
  if (opts.numClasses < 1) throw std::invalid_argument("numClasses must be >= 1");
  Layout layout = layoutFor(opts.depth);
  const int64_t expansion = layout.bottleneck ? BottleneckImpl::expansion : BasicBlockImpl::expansion;
  int64_t inplanes = 64;

  conv1 = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
  bn1 = register_module("bn1", Norm2d(64));

  auto makeLayer = [&](int64_t planes, int64_t blocks, int64_t stride) {
    torch::nn::Sequential seq;
    for (int64_t i = 0; i < blocks; i++) {
      int64_t s = i == 0 ? stride : 1;
      torch::nn::Sequential ds{nullptr};
      if (i == 0 && (stride != 1 || inplanes != planes * expansion)) {
        ds = torch::nn::Sequential(conv1x1(inplanes, planes * expansion, stride),
                                   Norm2d(planes * expansion));
      }
      if (layout.bottleneck) seq->push_back(Bottleneck(inplanes, planes, s, ds));
      else seq->push_back(BasicBlock(inplanes, planes, s, ds));
      inplanes = planes * expansion;
    }
    return seq;
  };
  layer1 = register_module("layer1", makeLayer(64, layout.blocks[0], 1));
  layer2 = register_module("layer2", makeLayer(128, layout.blocks[1], 2));
  layer3 = register_module("layer3", makeLayer(256, layout.blocks[2], 2));
  layer4 = register_module("layer4", makeLayer(512, layout.blocks[3], 2));
  fc = register_module("fc", torch::nn::Linear(512 * expansion, opts.numClasses));

  // torchvision's initialisation: He (fan_out) for convs, BN to identity.
  // fc keeps Linear's default init, as in torchvision.
  torch::NoGradGuard noGrad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  }
  if (opts.zeroInitResidual) {
    for (auto& m : modules(false)) {
      if (auto* b = m->as<Bottleneck>()) torch::nn::init::zeros_(b->bn3->weight);
      else if (auto* b2 = m->as<BasicBlock>()) torch::nn::init::zeros_(b2->bn2->weight);
    }
  }
}

torch::Tensor ResNetImpl::forward(torch::Tensor x) {
  x = bn1->forwardWith(conv1(x), {}, true);
  x = F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
  x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
  x = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions(1));
  return fc(torch::flatten(x, 1));
}

void ResNetImpl::replaceHead(int64_t numClasses) {
  if (numClasses < 1) throw std::invalid_argument("numClasses must be >= 1");
  auto device = fc->weight.device();
  auto dtype = fc->weight.scalar_type();
  auto head = torch::nn::Linear(fc->options.in_features(), numClasses);
  head->to(device, dtype);
  fc = replace_module("fc", head);
  options.numClasses = numClasses;
}

}  // namespace tl
