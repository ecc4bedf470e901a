// The optimizer (engine/optimizer.h): the multi-tensor AdamW against LibTorch's per-parameter
// AdamW (bitwise), and the parameter groups against mmcv / mmengine's paramwise rules as the
// papers' configs use them (expected groups written out by hand for a small module tree).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <sstream>

#include "dist/sync_batch_norm.h"
#include "engine/optimizer.h"

namespace segrun::engine {
namespace {

// Hand-computed: gradients (3, 4) and (12) have the global norm sqrt(9 + 16 + 144) = 13; clipped
// to 6.5 they are scaled by 6.5 / (13 + 1e-6). Then, on random gradients, LibTorch's own
// clip_grad_norm_ (per-parameter norms, the total read back to the host) gives the same bits.
TEST(ClipGradNorm, ScalesToTheMaxNormAndReturnsTheNormBeforeClipping) {
  torch::Tensor a = torch::zeros({2}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
  torch::Tensor unused = torch::zeros({3}, torch::requires_grad());  // no gradient: skipped
  a.mutable_grad() = torch::tensor({3.0f, 4.0f});
  b.mutable_grad() = torch::tensor({12.0f});
  const torch::Tensor norm = clip_grad_norm({a, unused, b}, 6.5);
  EXPECT_EQ(norm.dim(), 0);
  EXPECT_FLOAT_EQ(norm.item<float>(), 13.0f);
  const float scale = static_cast<float>(6.5 / (13.0 + 1e-6));
  EXPECT_FLOAT_EQ(a.grad()[1].item<float>(), 4.0f * scale);
  EXPECT_FLOAT_EQ(b.grad()[0].item<float>(), 12.0f * scale);
  EXPECT_FALSE(unused.grad().defined());
  // Below the max norm nothing changes; no gradient at all gives norm 0.
  EXPECT_FLOAT_EQ(clip_grad_norm({a, b}, 100.0).item<float>(), 6.5f);
  EXPECT_FLOAT_EQ(b.grad()[0].item<float>(), 12.0f * scale);
  EXPECT_EQ(clip_grad_norm({unused}, 1.0).item<float>(), 0.0f);

  torch::manual_seed(5);
  std::vector<torch::Tensor> mine, reference;
  for (auto shape : {std::vector<int64_t>{7}, {3, 5}, {2, 4, 3, 3}}) {
    mine.push_back(torch::zeros(shape, torch::requires_grad()));
    reference.push_back(torch::zeros(shape, torch::requires_grad()));
    const torch::Tensor g = torch::randn(shape);
    mine.back().mutable_grad() = g.clone();
    reference.back().mutable_grad() = g.clone();
  }
  const double reference_norm = torch::nn::utils::clip_grad_norm_(reference, 0.5);
  EXPECT_EQ(clip_grad_norm(mine, 0.5).item<double>(), static_cast<float>(reference_norm));
  for (size_t i = 0; i < mine.size(); ++i) EXPECT_TRUE(torch::equal(mine[i].grad(), reference[i].grad())) << i;
}

TEST(MultiTensorAdamW, EqualsLibTorchsAdamWBitForBit) {
  torch::manual_seed(3);
  std::vector<torch::Tensor> a, b;
  for (auto shape : {std::vector<int64_t>{5}, {3, 4}, {2, 3, 3, 3}}) {
    a.push_back(torch::randn(shape).requires_grad_());
    b.push_back(a.back().detach().clone().requires_grad_());
  }
  const auto options = torch::optim::AdamWOptions(1e-2).weight_decay(0.05).betas({0.8, 0.99}).eps(1e-6);
  torch::optim::AdamW reference(a, options);
  MultiTensorAdamW multi(b, options);
  for (int step = 0; step < 4; ++step) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (step == 2 && i == 1) {  // a parameter without gradient this step: its step count lags
        a[i].mutable_grad() = torch::Tensor();
        b[i].mutable_grad() = torch::Tensor();
        continue;
      }
      const torch::Tensor g = torch::randn(a[i].sizes());
      a[i].mutable_grad() = g.clone();
      b[i].mutable_grad() = g.clone();
    }
    reference.step();
    multi.step();
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

// amsgrad (or a sparse gradient) falls back to LibTorch's AdamW: the closure still runs once,
// and the step equals AdamW's own.
TEST(MultiTensorAdamW, AFallbackRunsTheClosureOnce) {
  auto options = torch::optim::AdamWOptions(1e-2).amsgrad(true);
  torch::Tensor a = torch::tensor({1.0, -2.0}).requires_grad_(true);
  torch::Tensor b = a.detach().clone().requires_grad_(true);
  torch::optim::AdamW reference({a}, options);
  MultiTensorAdamW multi({b}, options);
  int calls = 0;
  auto closure_of = [&calls](torch::Tensor& p, bool count) {
    return [&calls, &p, count]() {
      calls += count ? 1 : 0;
      if (p.grad().defined()) p.grad().zero_();
      torch::Tensor loss = (p * p).sum();
      loss.backward();
      return loss;
    };
  };
  const torch::Tensor expected_loss = reference.step(closure_of(a, false));
  const torch::Tensor loss = multi.step(closure_of(b, true));
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(torch::equal(loss, expected_loss));
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(MultiTensorAdamW, StateSerializesLikeAdamW) {
  torch::manual_seed(4);
  auto p = torch::randn({6}).requires_grad_();
  MultiTensorAdamW multi({p}, torch::optim::AdamWOptions(1e-3));
  p.mutable_grad() = torch::ones({6});
  multi.step();
  torch::serialize::OutputArchive out;
  multi.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  auto q = p.detach().clone().requires_grad_();
  torch::optim::AdamW plain({q}, torch::optim::AdamWOptions(1e-3));
  torch::serialize::InputArchive in;
  std::istringstream stream(bytes.str());
  in.load_from(stream);
  plain.load(in);
  q.mutable_grad() = torch::ones({6});
  p.mutable_grad() = torch::ones({6});
  plain.step();
  multi.step();
  EXPECT_TRUE(torch::equal(p, q));
}

// backbone.{conv, bn}, neck.norm (LayerNorm), decode_head.{query_embed (Embedding), gn
// (GroupNorm), sbn (SyncBatchNorm, world of one), cls (Linear)} and a frozen tensor.
struct TreeImpl : torch::nn::Module {
  TreeImpl() {
    auto backbone = register_module("backbone", std::make_shared<torch::nn::Module>());
    backbone->register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)));
    backbone->register_module("bn", torch::nn::BatchNorm2d(4));
    register_module("neck", std::make_shared<torch::nn::Module>())
        ->register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({4})));
    auto head = register_module("decode_head", std::make_shared<torch::nn::Module>());
    head->register_module("query_embed", torch::nn::Embedding(5, 4));
    head->register_module("gn", torch::nn::GroupNorm(2, 4));
    head->register_module("sbn", dist::SyncBatchNorm(4, nullptr));
    head->register_module("cls", torch::nn::Linear(4, 3));
    register_parameter("frozen", torch::ones({2}), /*requires_grad=*/false);
  }
};
TORCH_MODULE(Tree);

// name -> "group lr_mult weight_decay" for every trainable parameter.
std::map<std::string, std::string> assignment(const TrainConfig& train) {
  Tree tree;
  std::map<std::string, std::string> out;
  for (const auto& g : parameter_groups(*tree, train))
    for (const auto& name : g.parameter_names) {
      std::ostringstream os;
      os << g.name << " " << g.lr_mult << " " << g.weight_decay;
      out[name] = os.str();
    }
  return out;
}

TEST(ParameterGroups, DefaultsGiveBackboneAndHead) {
  TrainConfig train;
  train.backbone_lr_mult = 0.1;
  train.weight_decay = 0.01;
  const auto a = assignment(train);
  EXPECT_EQ(a.size(), 13u);  // every trainable tensor once, the frozen one not
  EXPECT_EQ(a.at("backbone.conv.weight"), "backbone 0.1 0.01");
  EXPECT_EQ(a.at("backbone.bn.bias"), "backbone 0.1 0.01");
  EXPECT_EQ(a.at("neck.norm.weight"), "head 1 0.01");
  EXPECT_EQ(a.at("decode_head.sbn.weight"), "head 1 0.01");
  Tree tree;
  EXPECT_EQ(parameter_groups(*tree, train).size(), 2u);
  auto optimizer = make_optimizer(*tree, train);
  train.lr = 2e-4;
  train.min_lr = 1e-6;
  train.warmup_iters = 0;
  train.iters = 100;
  set_learning_rates(*optimizer, train, 0);
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[0].options()).lr(), 2e-5);
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[1].options()).lr(), 2e-4);
  set_learning_rates(*optimizer, train, 100);  // both end at the absolute floor, as mmcv's hook
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[0].options()).lr(), 1e-6);
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[1].options()).lr(), 1e-6);
}

// DenseCLIP (CLIP-SP): custom_keys {'backbone': lr_mult 0.1, 'norm': decay_mult 0}; 'norm' is a
// substring match, so LayerNorms named "norm" lose decay and BatchNorms named "bn" keep it.
TEST(ParameterGroups, DenseClipNormKey) {
  TrainConfig train;
  train.backbone_lr_mult = 0.1;
  train.weight_decay = 1e-4;
  train.no_decay_keys = {"norm"};
  const auto a = assignment(train);
  EXPECT_EQ(a.at("neck.norm.weight"), "no_decay:norm 1 0");
  EXPECT_EQ(a.at("backbone.bn.weight"), "backbone 0.1 0.0001");
  EXPECT_EQ(a.at("decode_head.gn.weight"), "head 1 0.0001");
  EXPECT_EQ(a.at("decode_head.cls.weight"), "head 1 0.0001");
}

// MTA-CLIP (r50_1.py): backbone lr x0.1 decay x1 (a custom key, so its BatchNorms keep decay),
// query_embed / query_feat / level_embed decay 0, norm_decay_mult 0 for every other norm layer.
TEST(ParameterGroups, MtaClipKeysAndNormDecay) {
  TrainConfig train;
  train.backbone_lr_mult = 0.1;
  train.weight_decay = 0.02;
  train.no_decay_keys = {"query_embed", "query_feat", "level_embed"};
  train.norm_decay_mult = 0.0;
  const auto a = assignment(train);
  EXPECT_EQ(a.at("backbone.bn.weight"), "backbone 0.1 0.02");
  EXPECT_EQ(a.at("decode_head.query_embed.weight"), "no_decay:query_embed 1 0");
  EXPECT_EQ(a.at("neck.norm.bias"), "norm_layers 1 0");
  EXPECT_EQ(a.at("decode_head.gn.weight"), "norm_layers 1 0");
  EXPECT_EQ(a.at("decode_head.sbn.bias"), "norm_layers 1 0");
  EXPECT_EQ(a.at("decode_head.cls.weight"), "head 1 0.02");
}

// The longest matching key wins, as in mmcv: "backbone.bn" beats "backbone" (and takes lr x1).
TEST(ParameterGroups, LongestKeyWins) {
  TrainConfig train;
  train.backbone_lr_mult = 0.1;
  train.weight_decay = 0.5;
  train.no_decay_keys = {"backbone.bn"};
  const auto a = assignment(train);
  EXPECT_EQ(a.at("backbone.bn.weight"), "no_decay:backbone.bn 1 0");
  EXPECT_EQ(a.at("backbone.conv.weight"), "backbone 0.1 0.5");
}

}  // namespace
}  // namespace segrun::engine
