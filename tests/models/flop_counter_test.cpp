// models/flop_counter: per-op rules against hand-computed counts, outermost-op counting and
// submodule attribution on a hand-built module, parameter/buffer counts, and the CLIP FPN
// segmentor and attention-pooled CLIP ResNet against an independent reference (PyTorch 1.13's JIT
// trace with fvcore's rules, tests/models/reference_fvcore_flops.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/clip/clip_resnet.h"
#include "models/flop_counter.h"
#include "models/norm.h"
#include "models/segmentor.h"

namespace segrun::models {
namespace {

namespace F = torch::nn::functional;

int64_t by_op(const FlopReport& report, const std::string& op, int64_t* calls = nullptr) {
  for (const auto& item : report.by_op) {
    if (item.op == op) {
      if (calls) *calls = item.calls;
      return item.flops;
    }
  }
  if (calls) *calls = 0;
  return 0;
}

int64_t by_module(const FlopReport& report, const std::string& name) {
  for (const auto& item : report.by_module)
    if (item.first == name) return item.second;
  return -1;
}

// conv 3x3 -> BN -> ReLU in "features", a linear over the 256 pixels in "tokens", then code
// without parameters: a bmm of activations and a bilinear x2 upsample. LibTorch's nn::Linear
// runs matmul (3-D input) rather than aten::linear: the same multiply-adds.
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    features = register_module("features",
                               torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)),
                                                     torch::nn::BatchNorm2d(8), torch::nn::ReLU()));
    tokens = register_module("tokens", torch::nn::Linear(8, 6));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor f = features->forward(x);                           // [1, 8, 16, 16]
    torch::Tensor t = tokens->forward(f.flatten(2).transpose(1, 2));  // [1, 256, 6]
    torch::Tensor g = torch::bmm(t.transpose(1, 2), t);               // [1, 6, 6]: 6 * 256 * 6
    torch::Tensor up = F::interpolate(
        f, F::InterpolateFuncOptions().size(std::vector<int64_t>{32, 32}).mode(torch::kBilinear).align_corners(false));
    return up.sum() + g.sum();
  }
  torch::nn::Sequential features{nullptr};
  torch::nn::Linear tokens{nullptr};
};
TORCH_MODULE(TinyNet);

TEST(FlopCounter, HandBuiltModuleMatchesHandCount) {
  TinyNet net;
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 3, 16, 16});
  const FlopReport report = count_flops([&] { net->forward(x); }, net.get());

  const int64_t conv = 1 * 8 * 3 * 3 * 3 * 16 * 16;  // N Cout Cin kh kw Hout Wout = 55296
  const int64_t bn = 8 * 16 * 16 * 2;                // eval, affine: 2 per element
  const int64_t linear = 256 * 8 * 6;                // tokens x in x out
  const int64_t bmm = 1 * 6 * 256 * 6;
  const int64_t upsample = 4 * 8 * 32 * 32;  // 4 per output element
  EXPECT_EQ(report.total, conv + bn + linear + bmm + upsample);

  int64_t calls = 0;
  EXPECT_EQ(by_op(report, "aten::conv2d", &calls), conv);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(by_op(report, "aten::batch_norm"), bn);
  EXPECT_EQ(by_op(report, "aten::matmul", &calls), linear);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(by_op(report, "aten::bmm"), bmm);
  EXPECT_EQ(by_op(report, "aten::upsample_bilinear2d"), upsample);
  // Ops called inside counted ones (conv2d -> convolution -> _convolution, matmul -> mm) are not
  // counted again.
  EXPECT_EQ(by_op(report, "aten::mm"), 0);
  EXPECT_EQ(by_op(report, "aten::_convolution"), 0);
  EXPECT_EQ(report.by_op.size(), 5u);
  bool relu_free = false;
  for (const auto& item : report.uncounted) relu_free |= item.first == "aten::relu";
  EXPECT_TRUE(relu_free);

  // bmm follows the linear: attributed to "tokens"; the upsample of f too (last weighted op).
  EXPECT_EQ(by_module(report, "features"), conv + bn);
  EXPECT_EQ(by_module(report, "tokens"), linear + bmm + upsample);

  // Without a module, nothing is attributed; the total is the same.
  const FlopReport bare = count_flops([&] { net->forward(x); });
  EXPECT_EQ(bare.total, report.total);
  EXPECT_TRUE(bare.by_module.empty());
}

TEST(FlopCounter, TrainingBatchNormAndNormsFollowFvcore) {
  torch::NoGradGuard no_grad;
  torch::nn::BatchNorm2d bn(4);
  torch::nn::GroupNorm gn(2, 4);
  torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({5}).elementwise_affine(false));
  const torch::Tensor x = torch::randn({2, 4, 3, 5});
  bn->train();
  const FlopReport report = count_flops([&] {
    bn->forward(x);
    gn->forward(x);
    ln->forward(x);
  });
  EXPECT_EQ(by_op(report, "aten::batch_norm"), 120 * 5);  // training, affine
  EXPECT_EQ(by_op(report, "aten::group_norm"), 120 * 5);  // affine
  EXPECT_EQ(by_op(report, "aten::layer_norm"), 120 * 4);  // no affine
}

TEST(FlopCounter, OpRules) {
  torch::NoGradGuard no_grad;
  auto count = [](const std::function<void()>& fn) { return count_flops(fn).total; };
  const torch::Tensor a = torch::randn({2, 3, 4, 5}), b = torch::randn({5, 7});
  EXPECT_EQ(count([&] { torch::matmul(a, b); }), 2 * 3 * 4 * 5 * 7);  // broadcast batch
  EXPECT_EQ(count([&] { torch::matmul(b.t(), a.transpose(-1, -2).select(0, 0)); }), 3 * 7 * 5 * 4);
  EXPECT_EQ(count([&] { torch::mm(torch::randn({3, 5}), b); }), 3 * 5 * 7);
  // aten::linear (what Python's F.linear calls) once, not again as the addmm/matmul inside.
  const FlopReport linear = count_flops([&] { torch::linear(torch::randn({4, 3, 5}), b.t(), torch::zeros({7})); });
  EXPECT_EQ(linear.total, 4 * 3 * 5 * 7);
  ASSERT_EQ(linear.by_op.size(), 1u);
  EXPECT_EQ(linear.by_op[0].op, "aten::linear");
  EXPECT_EQ(count([&] { torch::linear(torch::randn({3, 5}), b.t(), torch::zeros({7})); }), 3 * 5 * 7);
  EXPECT_EQ(count([&] { torch::addmm(torch::zeros({3, 7}), torch::randn({3, 5}), b); }), 3 * 5 * 7);
  EXPECT_EQ(count([&] {
              torch::baddbmm(torch::zeros({2, 3, 7}), torch::randn({2, 3, 5}), torch::randn({2, 5, 7}));
            }),
            2 * 3 * 5 * 7);
  EXPECT_EQ(count([&] {
              torch::einsum("bij,bjk->bik", {torch::randn({2, 3, 4}), torch::randn({2, 4, 5})});
            }),
            2 * 3 * 4 * 5);
  EXPECT_EQ(count([&] { torch::einsum("...ij,jk", {torch::randn({2, 3, 4}), torch::randn({4, 5})}); }), 2 * 3 * 4 * 5);
  // Transposed conv: N * prod(weight) * prod(input spatial); weight [Cin, Cout/g, kh, kw].
  torch::nn::ConvTranspose2d up(torch::nn::ConvTranspose2dOptions(4, 6, 2).stride(2));
  EXPECT_EQ(count([&] { up->forward(torch::randn({2, 4, 5, 5})); }), 2 * (4 * 6 * 2 * 2) * 25);
  // Grouped, strided conv: N * Cout * Cin/g * k * out spatial.
  torch::nn::Conv2d grouped(torch::nn::Conv2dOptions(8, 4, 3).groups(2).stride(2).padding(1));
  EXPECT_EQ(count([&] { grouped->forward(torch::randn({1, 8, 10, 10})); }), 4 * 4 * 9 * 25);
  torch::nn::Conv1d conv1d(torch::nn::Conv1dOptions(3, 5, 1));
  EXPECT_EQ(count([&] { conv1d->forward(torch::randn({2, 3, 11})); }), 2 * 5 * 3 * 11);
  const torch::Tensor img = torch::randn({1, 2, 4, 6});
  EXPECT_EQ(
      count([&] {
        F::interpolate(img, F::InterpolateFuncOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kNearest));
      }),
      2 * 8 * 12);
  EXPECT_EQ(count([&] { F::adaptive_avg_pool2d(img, F::AdaptiveAvgPool2dFuncOptions(1)); }), 48);
  EXPECT_EQ(count([&] {
              F::grid_sample(img, torch::zeros({1, 3, 5, 2}), F::GridSampleFuncOptions().align_corners(false));
            }),
            4 * 2 * 3 * 5);
  // Free ops.
  EXPECT_EQ(count([&] { torch::relu(img + img).softmax(1); }), 0);
}

TEST(FlopCounter, ParameterCounts) {
  struct Net : torch::nn::Module {
    Net() {
      body = register_module("body", torch::nn::Linear(4, 3));        // 15 trainable
      norm = register_module("norm", torch::nn::BatchNorm1d(3));      // 6 trainable, 3+3+1 buffers
      frozen = register_parameter("scale", torch::ones({2}), false);  // root, frozen
      // The same tensor under a second name is counted once.
      alias = register_module("alias", body);
    }
    torch::nn::Linear body{nullptr}, alias{nullptr};
    torch::nn::BatchNorm1d norm{nullptr};
    torch::Tensor frozen;
  };
  Net net;
  net.body->bias.set_requires_grad(false);  // 3 frozen in body
  const ParameterReport report = count_parameters(net);
  EXPECT_EQ(report.total.trainable, 12 + 6);
  EXPECT_EQ(report.total.frozen, 3 + 2);
  EXPECT_EQ(report.total.buffers, 7);
  std::map<std::string, ModuleSize> groups;
  for (const auto& g : report.groups) groups[g.name] = g;
  EXPECT_EQ(groups.count("alias"), 0u);
  EXPECT_EQ(groups["body"].trainable, 12);
  EXPECT_EQ(groups["body"].frozen, 3);
  EXPECT_EQ(groups["norm"].trainable, 6);
  EXPECT_EQ(groups["norm"].buffers, 7);
  EXPECT_EQ(groups["(root)"].frozen, 2);
}

TEST(FlopCounter, ErrorsInsideTheForwardPropagate) {
  torch::NoGradGuard no_grad;
  EXPECT_THROW(count_flops([] { torch::mm(torch::randn({2, 3}), torch::randn({4, 5})); }), c10::Error);
  // The counter is gone afterwards: a new count starts from zero.
  EXPECT_EQ(count_flops([] { torch::mm(torch::randn({2, 3}), torch::randn({3, 5})); }).total, 30);
}

nlohmann::json run_reference(const std::string& args) {
  const std::string command = std::string(SEGRUN_TEST_PYTHON) + " " + SEGRUN_TEST_SOURCE_DIR +
                              "/tests/models/reference_fvcore_flops.py " + args;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  if (pclose(pipe) != 0) throw std::runtime_error("reference failed: " + command);
  return nlohmann::json::parse(out);
}

int64_t numel_sum(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& item : module.named_parameters()) n += item.value().numel();
  return n;
}

TEST(FlopCounterReference, FpnSegmentorMatchesFvcoreRulesOnJitTrace) {
  BuildOptions options;
  options.config.backbone = "clip_rn50";
  options.config.width = 8;
  options.config.head = "fpn";
  options.config.norm = "syncbn";
  options.config.fpn_channels = 32;
  options.num_classes = 5;
  options.crop_size = 64;
  auto model = build_segmentor(options);
  model->eval();
  torch::NoGradGuard no_grad;
  const FlopReport report = count_flops([&] { model->predict_logits(torch::randn({1, 3, 64, 64})); }, model.get());
  const nlohmann::json ref = run_reference("fpn clip_rn50 8 32 5 64 64");
  // mmseg's FPNHead also resizes the 1/4 level maps to their own size (counted by fvcore);
  // segrun's head skips those identity resizes.
  const int64_t identity = ref["identity_resize"].get<int64_t>();
  EXPECT_EQ(identity, 3 * 4 * 32 * 16 * 16);  // levels 1/8..1/32, 4 per output element
  EXPECT_EQ(report.total, ref["flops"].get<int64_t>() - identity);
  // fvcore sees aten::_convolution where LibTorch's outermost op is aten::conv2d.
  EXPECT_EQ(by_op(report, "aten::conv2d"), ref["by_op"]["aten::_convolution"].get<int64_t>());
  EXPECT_EQ(by_op(report, "aten::batch_norm"), ref["by_op"]["aten::batch_norm"].get<int64_t>());
  EXPECT_EQ(by_op(report, "aten::upsample_bilinear2d"),
            ref["by_op"]["aten::upsample_bilinear2d"].get<int64_t>() - identity);
  EXPECT_EQ(by_op(report, "aten::upsample_nearest2d"), ref["by_op"]["aten::upsample_nearest2d"].get<int64_t>());
  const ParameterReport params = count_parameters(*model);
  EXPECT_EQ(params.total.trainable + params.total.frozen, ref["params"].get<int64_t>());
  EXPECT_EQ(params.total.trainable + params.total.frozen, numel_sum(*model));
  int64_t modules = 0;
  for (const auto& item : report.by_module) {
    EXPECT_TRUE(item.first == "backbone" || item.first == "neck" || item.first == "decode_head") << item.first;
    modules += item.second;
  }
  EXPECT_EQ(modules, report.total);
}

TEST(FlopCounterReference, AttentionPooledClipResNetMatchesFvcoreRulesOnJitTrace) {
  ClipResNetOptions options;
  options.variant = "clip_rn50";
  options.width = 8;
  options.input_resolution = 64;
  options.with_attnpool = true;
  options.norm = make_norm_factory("bn", nullptr);
  ClipResNet net(options);
  net->eval();
  torch::NoGradGuard no_grad;
  const FlopReport report = count_flops([&] { net->forward(torch::randn({1, 3, 64, 64})); }, net.get());
  const nlohmann::json ref = run_reference("clip clip_rn50 8 32 5 64 64");
  // (the positional grid's resize to the same size is executed by both, and counted by both)
  EXPECT_EQ(report.total, ref["flops"].get<int64_t>()) << ref.dump();
  EXPECT_EQ(count_parameters(*net).total.trainable, ref["params"].get<int64_t>());
}

}  // namespace
}  // namespace segrun::models
