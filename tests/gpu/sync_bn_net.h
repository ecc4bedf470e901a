#pragma once
// The small network of the GPU suites' gradient-sync checks: conv -> SyncBatchNorm -> conv ->
// SyncBatchNorm -> linear head, over a communicator (null: a world of one, LibTorch's
// batch_norm). make_sync_bn_net draws the same weights every time (its own seed).
#include <torch/torch.h>

#include <memory>

#include "dist/communicator.h"
#include "dist/sync_batch_norm.h"

namespace segrun::dist {

struct NetImpl : torch::nn::Module {
  explicit NetImpl(std::shared_ptr<Communicator> comm) {
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    bn1 = register_module("bn1", SyncBatchNorm(8, comm));
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3).padding(1)));
    bn2 = register_module("bn2", SyncBatchNorm(16, comm));
    head = register_module("head", torch::nn::Linear(16, 4));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = torch::relu(bn1(conv1(x)));
    h = torch::relu(bn2(conv2(h)));
    return head(h.mean({2, 3}));
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  SyncBatchNorm bn1{nullptr}, bn2{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Net);

inline Net make_sync_bn_net(std::shared_ptr<Communicator> comm, const torch::Device& device) {
  torch::manual_seed(21);  // the same weights on every rank and in the reference
  Net net(std::move(comm));
  net->to(device);
  return net;
}

}  // namespace segrun::dist
