#include "engine/optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>

#include "dist/sync_batch_norm.h"
#include "engine/lr_schedule.h"
#include "engine/torch_version.h"
#include "models/norm.h"

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

const torch::optim::AdamWParamState* MultiTensorAdamW::state_of(const torch::Tensor& parameter) const {
  using Key = typename std::decay_t<decltype(state_)>::key_type;
  const auto found = state_.find(state_key<Key>(parameter));
  return found == state_.end() ? nullptr : static_cast<const torch::optim::AdamWParamState*>(found->second.get());
}

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
    if (!simple) {
      torch::optim::AdamW::step(nullptr);  // the closure has run above: once, not twice
      return loss;
    }
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

std::vector<ParameterGroup> parameter_groups(torch::nn::Module& model, const TrainConfig& train) {
  // Names of the parameters that normalization layers own directly.
  std::set<std::string> norm_parameters;
  for (const auto& item : model.named_modules()) {
    const torch::nn::Module& m = *item.value();
    const bool is_norm =
        dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&m) || dynamic_cast<const torch::nn::BatchNorm1dImpl*>(&m) ||
        dynamic_cast<const torch::nn::LayerNormImpl*>(&m) || dynamic_cast<const torch::nn::GroupNormImpl*>(&m) ||
        dynamic_cast<const dist::SyncBatchNormImpl*>(&m) || dynamic_cast<const models::FrozenBatchNorm2dImpl*>(&m);
    if (!is_norm) continue;
    for (const auto& p : m.named_parameters(/*recurse=*/false))
      norm_parameters.insert(item.key().empty() ? p.key() : item.key() + "." + p.key());
  }
  // Custom keys, longest first (mmcv sorts them so); ties keep this order.
  struct Key {
    std::string text, group;
    double lr_mult, decay_mult;
  };
  std::vector<Key> keys{{"backbone", "backbone", train.backbone_lr_mult, 1.0}};
  for (const auto& k : train.no_decay_keys) keys.push_back({k, "no_decay:" + k, 1.0, 0.0});
  std::stable_sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) { return a.text.size() > b.text.size(); });

  std::vector<ParameterGroup> groups;
  auto group = [&](const std::string& name, double lr_mult, double decay_mult) -> ParameterGroup& {
    for (auto& g : groups)
      if (g.name == name) return g;
    groups.push_back(ParameterGroup{name, lr_mult, train.weight_decay * decay_mult, {}, {}});
    return groups.back();
  };
  group("backbone", train.backbone_lr_mult, 1.0);  // fixed order: backbone, head, keys, norm layers
  group("head", 1.0, 1.0);
  for (const auto& k : train.no_decay_keys) group("no_decay:" + k, 1.0, 0.0);
  group("norm_layers", 1.0, train.norm_decay_mult);
  for (const auto& p : model.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    const std::string& name = p.key();
    const auto key =
        std::find_if(keys.begin(), keys.end(), [&](const Key& k) { return name.find(k.text) != std::string::npos; });
    const bool norm_rule = norm_parameters.count(name) > 0 && train.norm_decay_mult != 1.0;
    ParameterGroup& g = key != keys.end() ? group(key->group, 0, 0)
                        : norm_rule       ? group("norm_layers", 0, 0)
                                          : group("head", 0, 0);
    g.parameter_names.push_back(name);
    g.parameters.push_back(p.value());
  }
  groups.erase(
      std::remove_if(groups.begin(), groups.end(), [](const ParameterGroup& g) { return g.parameters.empty(); }),
      groups.end());
  return groups;
}

std::unique_ptr<MultiTensorAdamW> make_optimizer(torch::nn::Module& model, const TrainConfig& train) {
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  std::vector<double> lr_mults;
  for (const ParameterGroup& g : parameter_groups(model, train)) {
    param_groups.emplace_back(
        g.parameters, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(train.lr * g.lr_mult)
                                                                       .weight_decay(g.weight_decay)
                                                                       .betas({0.9, 0.999})
                                                                       .eps(1e-8)));
    lr_mults.push_back(g.lr_mult);
  }
  auto optimizer = std::make_unique<MultiTensorAdamW>(param_groups, torch::optim::AdamWOptions(train.lr));
  optimizer->lr_multipliers = std::move(lr_mults);
  return optimizer;
}

void set_learning_rates(MultiTensorAdamW& optimizer, const TrainConfig& train, int64_t iter) {
  auto& groups = optimizer.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    const double mult = i < optimizer.lr_multipliers.size() ? optimizer.lr_multipliers[i] : 1.0;
    static_cast<torch::optim::AdamWOptions&>(groups[i].options()).lr(lr_at(train, iter, mult));
  }
}

torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& parameters, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({});
  const torch::Tensor norm = torch::stack(at::_foreach_norm(grads, 2)).norm(2);
  const torch::Tensor scale = (max_norm / (norm + 1e-6)).clamp_max(1.0);
#if SEGRUN_TORCH_AT_LEAST(2, 3)
  at::_foreach_mul_(grads, scale);  // one multi-tensor kernel (the Tensor overload is 2.x's)
#else
  for (auto& g : grads) g.mul_(scale);
#endif
  return norm;
}

}  // namespace segrun::engine
