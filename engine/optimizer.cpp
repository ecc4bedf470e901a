#include "engine/optimizer.h"

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>

#include "models/segmentor.h"

namespace segrun::engine {
namespace {

// The key torch::optim keeps a parameter's state under: the TensorImpl's address, as a string in
// LibTorch 1.x and as the pointer itself in 2.x.
template <typename Key>
Key state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace

torch::Tensor MultiTensorAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    bool simple = !options.amsgrad();
    for (const auto& p : group.params()) simple = simple && !(p.grad().defined() && p.grad().is_sparse());
    if (!simple) return torch::optim::AdamW::step(closure);
  }
  using Key = typename std::decay_t<decltype(state_)>::key_type;
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    const double lr = options.lr(), beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
    // Parameters grouped by their step count (equal for all unless some had no gradient).
    struct Batch {
      std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    };
    std::map<int64_t, Batch> batches;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const Key key = state_key<Key>(p);
      auto found = state_.find(key);
      if (found == state_.end()) {
        auto state = std::make_unique<torch::optim::AdamWParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        found = state_.emplace(key, std::move(state)).first;
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*found->second);
      state.step(state.step() + 1);
      Batch& batch = batches[state.step()];
      batch.params.push_back(p);
      batch.grads.push_back(p.grad());
      batch.exp_avgs.push_back(state.exp_avg());
      batch.exp_avg_sqs.push_back(state.exp_avg_sq());
    }
    for (auto& [step, b] : batches) {
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(step));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(step));
      at::_foreach_mul_(b.params, 1 - lr * options.weight_decay());
      at::_foreach_mul_(b.exp_avgs, beta1);
      at::_foreach_add_(b.exp_avgs, b.grads, 1 - beta1);
      at::_foreach_mul_(b.exp_avg_sqs, beta2);
      at::_foreach_addcmul_(b.exp_avg_sqs, b.grads, b.grads, 1 - beta2);
      std::vector<torch::Tensor> denom = at::_foreach_sqrt(b.exp_avg_sqs);
      at::_foreach_div_(denom, std::sqrt(bias_correction2));
      at::_foreach_add_(denom, options.eps());
      at::_foreach_addcdiv_(b.params, b.exp_avgs, denom, -lr / bias_correction1);
    }
  }
  return loss;
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(models::SegmentorImpl& model, const TrainConfig& train) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto options = [&](double lr) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(lr).weight_decay(train.weight_decay).betas({0.9, 0.999}).eps(1e-8));
  };
  groups.emplace_back(model.backbone_parameters(), options(train.lr * train.backbone_lr_mult));
  groups.emplace_back(model.head_parameters(), options(train.lr));
  return std::make_unique<MultiTensorAdamW>(groups, torch::optim::AdamWOptions(train.lr));
}

void set_learning_rates(torch::optim::AdamW& optimizer, double lr, double backbone_lr_mult) {
  auto& groups = optimizer.param_groups();
  static_cast<torch::optim::AdamWOptions&>(groups[0].options()).lr(lr * backbone_lr_mult);
  static_cast<torch::optim::AdamWOptions&>(groups[1].options()).lr(lr);
}

}  // namespace segrun::engine
