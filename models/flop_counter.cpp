// Parameter counts and fvcore-convention FLOP counting of a forward pass: see flop_counter.h.
#include "models/flop_counter.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"

namespace segrun::models {
namespace {

// Names are prefixed (fc_) because this file is compiled in a unity batch with other sources.

int64_t fc_numel(c10::IntArrayRef shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const at::Tensor& fc_tensor(const std::string& op, c10::ArrayRef<c10::IValue> args, size_t index, const char* what) {
  SEGRUN_CHECK(index < args.size() && args[index].isTensor(), ModelError,
               "flop counter: " << op << ": argument " << index << " (" << what << ") is not a tensor");
  return args[index].toTensor();
}

bool fc_has_tensor(c10::ArrayRef<c10::IValue> args, size_t index) {
  return index < args.size() && args[index].isTensor() && args[index].toTensor().defined();
}

// [.., n, k] x [.., k, m] with broadcast batch dims (1-D operands as torch.matmul treats them).
int64_t fc_matmul(const std::string& op, const at::Tensor& a, const at::Tensor& b) {
  std::vector<int64_t> as = a.sizes().vec(), bs = b.sizes().vec();
  SEGRUN_CHECK(!as.empty() && !bs.empty(), ModelError, "flop counter: " << op << ": scalar operand");
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const int64_t n = as[as.size() - 2], k = as.back(), m = bs.back();
  SEGRUN_CHECK(bs[bs.size() - 2] == k, ModelError,
               "flop counter: " << op << ": inner sizes differ (" << a.sizes() << " x " << b.sizes() << ")");
  const size_t a_batch = as.size() - 2, b_batch = bs.size() - 2, batch_dims = std::max(a_batch, b_batch);
  int64_t batch = 1;
  for (size_t i = 0; i < batch_dims; ++i) {
    const int64_t da = i < batch_dims - a_batch ? 1 : as[i - (batch_dims - a_batch)];
    const int64_t db = i < batch_dims - b_batch ? 1 : bs[i - (batch_dims - b_batch)];
    batch *= std::max(da, db);
  }
  return batch * n * k * m;
}

// numpy.einsum_path's count halved (fvcore's einsum rule), contracting left to right:
// each pairwise step costs the product of the sizes of every index involved, halved when
// nothing is summed over.
int64_t fc_einsum(const std::string& op, const std::string& equation, const std::vector<at::Tensor>& operands) {
  std::string eq;
  for (char c : equation)
    if (c != ' ') eq += c;
  const size_t arrow = eq.find("->");
  const std::string lhs = eq.substr(0, arrow);
  std::vector<std::string> terms;
  std::stringstream split(lhs);
  for (std::string t; std::getline(split, t, ',');) terms.push_back(t);
  SEGRUN_CHECK(terms.size() == operands.size(), ModelError,
               "flop counter: " << op << ": '" << equation << "' names " << terms.size() << " operands, got "
                                << operands.size());
  // Ellipsis dims become distinct pseudo-indices (uppercase 'A'+i from the right).
  std::map<char, int64_t> size;
  std::vector<std::vector<char>> idx(terms.size());
  size_t ellipsis_rank = 0;
  for (size_t t = 0; t < terms.size(); ++t) {
    const std::string& term = terms[t];
    const size_t dots = term.find("...");
    const int64_t rank = operands[t].dim();
    const int64_t named = static_cast<int64_t>(term.size()) - (dots == std::string::npos ? 0 : 3);
    const int64_t ell = dots == std::string::npos ? 0 : rank - named;
    ellipsis_rank = std::max(ellipsis_rank, static_cast<size_t>(std::max<int64_t>(ell, 0)));
    int64_t dim = 0;
    for (size_t i = 0; i < term.size(); ++i) {
      if (term.compare(i, 3, "...") == 0) {
        for (int64_t e = 0; e < ell; ++e, ++dim) {
          const char c = static_cast<char>('A' + (ell - 1 - e));
          idx[t].push_back(c);
          size[c] = std::max(size[c], operands[t].size(dim));
        }
        i += 2;
        continue;
      }
      SEGRUN_CHECK(dim < rank, ModelError,
                   "flop counter: " << op << ": '" << equation << "' has more indices than operand " << t << " dims");
      idx[t].push_back(term[i]);
      size[term[i]] = std::max(size[term[i]], operands[t].size(dim));
      ++dim;
    }
  }
  std::set<char> out;
  if (arrow != std::string::npos) {
    const std::string rhs = eq.substr(arrow + 2);
    for (size_t i = 0; i < rhs.size(); ++i) {
      if (rhs.compare(i, 3, "...") == 0) {
        for (size_t e = 0; e < ellipsis_rank; ++e) out.insert(static_cast<char>('A' + e));
        i += 2;
      } else {
        out.insert(rhs[i]);
      }
    }
  } else {  // implicit output: indices appearing once, plus the ellipsis
    std::map<char, int> count;
    for (const auto& v : idx)
      for (char c : v) ++count[c];
    for (const auto& [c, n] : count)
      if (n == 1 || (c >= 'A' && c <= 'Z')) out.insert(c);
  }
  int64_t total = 0;
  std::set<char> current(idx[0].begin(), idx[0].end());
  const size_t steps = std::max<size_t>(1, idx.size() - 1);
  for (size_t s = 0; s < steps; ++s) {
    std::set<char> involved = current;
    if (idx.size() > 1) involved.insert(idx[s + 1].begin(), idx[s + 1].end());
    std::set<char> keep = out;  // indices still needed after this step
    for (size_t later = s + 2; later < idx.size(); ++later) keep.insert(idx[later].begin(), idx[later].end());
    int64_t product = 1;
    bool summed = false;
    std::set<char> result;
    for (char c : involved) {
      product *= size[c];
      if (keep.count(c))
        result.insert(c);
      else
        summed = true;
    }
    const int64_t terms_in_step = idx.size() > 1 ? 2 : 1;
    const int64_t factor = std::max<int64_t>(1, terms_in_step - 1) + (summed ? 1 : 0);
    total += product * factor / 2;
    current = result;
  }
  return total;
}

int64_t fc_conv(const std::string& op, c10::ArrayRef<c10::IValue> in, c10::ArrayRef<c10::IValue> out, bool transposed) {
  const at::Tensor& x = fc_tensor(op, in, 0, "input");
  const at::Tensor& w = fc_tensor(op, in, 1, "weight");
  SEGRUN_CHECK(!out.empty() && out[0].isTensor(), ModelError, "flop counter: " << op << ": no output recorded");
  const at::Tensor& y = out[0].toTensor();
  // Unbatched inputs ([C, spatial...]) have one dim less than the weight.
  const bool batched = x.dim() == w.dim();
  const int64_t batch = batched ? x.size(0) : 1;
  const at::Tensor& spatial_of = transposed ? x : y;
  const int64_t first_spatial = spatial_of.dim() - (w.dim() - 2);
  return batch * fc_numel(w.sizes()) * fc_numel(spatial_of.sizes().slice(first_spatial));
}

// fvcore's norm rule: numel * (5 if affine else 4).
int64_t fc_norm(const std::string& op, c10::ArrayRef<c10::IValue> in, size_t affine_index) {
  return fc_tensor(op, in, 0, "input").numel() * (fc_has_tensor(in, affine_index) ? 5 : 4);
}

int64_t fc_output_numel(const std::string& op, c10::ArrayRef<c10::IValue> out) {
  SEGRUN_CHECK(!out.empty() && out[0].isTensor(), ModelError, "flop counter: " << op << ": no output recorded");
  return out[0].toTensor().numel();
}

}  // namespace

std::optional<int64_t> op_flops(const std::string& op, c10::ArrayRef<c10::IValue> in, c10::ArrayRef<c10::IValue> out) {
  static const std::unordered_set<std::string> kConv{"aten::conv1d", "aten::conv2d", "aten::conv3d"};
  static const std::unordered_set<std::string> kConvTransposed{"aten::conv_transpose1d", "aten::conv_transpose2d",
                                                               "aten::conv_transpose3d"};
  if (kConv.count(op)) return fc_conv(op, in, out, false);
  if (kConvTransposed.count(op)) return fc_conv(op, in, out, true);
  if (op == "aten::convolution" || op == "aten::_convolution") {
    SEGRUN_CHECK(in.size() > 6 && in[6].isBool(), ModelError,
                 "flop counter: " << op << ": argument 6 (transposed) is not a bool");
    return fc_conv(op, in, out, in[6].toBool());
  }
  if (op == "aten::linear") {
    const at::Tensor& w = fc_tensor(op, in, 1, "weight");
    return fc_tensor(op, in, 0, "input").numel() * (w.dim() == 2 ? w.size(0) : 1);
  }
  if (op == "aten::matmul" || op == "aten::mm" || op == "aten::bmm")
    return fc_matmul(op, fc_tensor(op, in, 0, "self"), fc_tensor(op, in, 1, "other"));
  if (op == "aten::addmm" || op == "aten::baddbmm")
    return fc_matmul(op, fc_tensor(op, in, 1, "mat1"), fc_tensor(op, in, 2, "mat2"));
  if (op == "aten::einsum") {
    SEGRUN_CHECK(in.size() >= 2 && in[0].isString() && in[1].isTensorList(), ModelError,
                 "flop counter: " << op << ": expected (equation, tensors)");
    return fc_einsum(op, in[0].toStringRef(), in[1].toTensorVector());
  }
  if (op == "aten::batch_norm") {
    SEGRUN_CHECK(in.size() > 5 && in[5].isBool(), ModelError,
                 "flop counter: " << op << ": argument 5 (training) is not a bool");
    if (in[5].toBool()) return fc_norm(op, in, 1);
    return fc_tensor(op, in, 0, "input").numel() * (fc_has_tensor(in, 1) ? 2 : 1);
  }
  if (op == "aten::group_norm" || op == "aten::layer_norm") return fc_norm(op, in, 2);
  if (op == "aten::instance_norm") return fc_norm(op, in, 1);
  if (op == "aten::upsample_bilinear2d" || op == "aten::grid_sampler") return 4 * fc_output_numel(op, out);
  if (op == "aten::upsample_nearest2d") return fc_output_numel(op, out);
  if (op == "aten::adaptive_avg_pool2d") return fc_tensor(op, in, 0, "input").numel();
  return std::nullopt;
}

namespace {

// What one count_flops call accumulates; reached from the callbacks through fc_active.
struct FcState {
  int depth = 0;  // ATen ops currently open on this thread
  std::map<std::string, OpFlops> ops;
  std::map<std::string, int64_t> uncounted;
  std::unordered_map<const c10::TensorImpl*, std::string> owner;  // parameter/buffer -> top-level name
  bool attribute = false;
  std::string current_module = "(input)";
  std::vector<std::pair<std::string, int64_t>> by_module;
  int64_t total = 0;
  std::exception_ptr error;  // first error inside a callback (callbacks must not throw)
};

// The counter of the count_flops call running on this thread (null when none): RecordFunction
// callbacks are plain function pointers, so this thread-local is the only way to reach it.
thread_local FcState* fc_active = nullptr;

// FLOPs of an op whose inputs must be read when it starts: a boxed tensor list (einsum's
// operands) no longer holds its tensors when the op ends.
struct FcEarlyCount : at::ObserverContext {
  int64_t flops = 0;
};

std::unique_ptr<at::ObserverContext> fc_on_start(const at::RecordFunction& fn) {
  FcState* s = fc_active;
  if (!s) return nullptr;
  if (s->depth++ != 0 || s->error || std::strcmp(fn.name(), "aten::einsum") != 0) return nullptr;
  try {
    const c10::ArrayRef<const c10::IValue> raw = fn.inputs();
    auto early = std::make_unique<FcEarlyCount>();
    early->flops = op_flops(fn.name(), c10::ArrayRef<c10::IValue>(raw.data(), raw.size()), {}).value_or(0);
    return early;
  } catch (...) {
    s->error = std::current_exception();
    return nullptr;
  }
}

void fc_attribute(FcState& s, c10::ArrayRef<c10::IValue> inputs) {
  for (const c10::IValue& v : inputs) {
    if (!v.isTensor()) continue;
    auto it = s.owner.find(v.toTensor().unsafeGetTensorImpl());
    if (it != s.owner.end()) {
      s.current_module = it->second;
      return;
    }
  }
}

void fc_on_end(const at::RecordFunction& fn, at::ObserverContext* context) {
  FcState* s = fc_active;
  if (!s) return;
  if (--s->depth != 0 || s->error) return;  // only outermost ops count
  try {
    const std::string name = fn.name();
    const c10::ArrayRef<const c10::IValue> raw = fn.inputs();
    const c10::ArrayRef<c10::IValue> inputs(raw.data(), raw.size());
    if (s->attribute) fc_attribute(*s, inputs);
    const auto* early = dynamic_cast<const FcEarlyCount*>(context);
    const std::optional<int64_t> flops =
        early ? std::optional<int64_t>(early->flops) : op_flops(name, inputs, fn.outputs());
    if (!flops) {
      ++s->uncounted[name];
      return;
    }
    OpFlops& entry = s->ops[name];
    entry.op = name;
    ++entry.calls;
    entry.flops += *flops;
    s->total += *flops;
    if (s->attribute) {
      auto it = std::find_if(s->by_module.begin(), s->by_module.end(),
                             [&](const auto& item) { return item.first == s->current_module; });
      if (it == s->by_module.end())
        s->by_module.emplace_back(s->current_module, *flops);
      else
        it->second += *flops;
    }
  } catch (...) {
    s->error = std::current_exception();
  }
}

std::string fc_top_level(const std::string& name) {
  const size_t dot = name.find('.');
  return dot == std::string::npos ? "(root)" : name.substr(0, dot);
}

// Registers the callback for the lifetime of the object and makes `state` the thread's counter.
class FcScope {
 public:
  explicit FcScope(FcState& state) : previous_(fc_active) {
    fc_active = &state;
    handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(fc_on_start, fc_on_end)
                                             .needsInputs(true)
                                             .needsOutputs(true)
                                             .scopes({at::RecordScope::FUNCTION}));
  }
  ~FcScope() {
    at::removeCallback(handle_);
    fc_active = previous_;
  }
  FcScope(const FcScope&) = delete;
  FcScope& operator=(const FcScope&) = delete;

 private:
  FcState* previous_;
  at::CallbackHandle handle_;
};

}  // namespace

FlopReport count_flops(const std::function<void()>& forward, const torch::nn::Module* module) {
  FcState state;
  if (module) {
    state.attribute = true;
    for (const auto& item : module->named_parameters(true))
      state.owner.emplace(item.value().unsafeGetTensorImpl(), fc_top_level(item.key()));
    for (const auto& item : module->named_buffers(true))
      state.owner.emplace(item.value().unsafeGetTensorImpl(), fc_top_level(item.key()));
  }
  {
    at::RecordFunctionGuard enabled(true);
    FcScope scope(state);
    forward();
  }
  if (state.error) std::rethrow_exception(state.error);

  FlopReport report;
  report.total = state.total;
  for (auto& item : state.ops) report.by_op.push_back(item.second);
  std::stable_sort(report.by_op.begin(), report.by_op.end(),
                   [](const OpFlops& a, const OpFlops& b) { return a.flops > b.flops; });
  report.by_module = std::move(state.by_module);
  report.uncounted.assign(state.uncounted.begin(), state.uncounted.end());
  return report;
}

ParameterReport count_parameters(const torch::nn::Module& module) {
  ParameterReport report;
  report.total.name = "total";
  std::unordered_set<const c10::TensorImpl*> seen;
  auto group = [&](const std::string& key) -> ModuleSize& {
    const std::string name = fc_top_level(key);
    for (ModuleSize& g : report.groups)
      if (g.name == name) return g;
    report.groups.push_back(ModuleSize{name, 0, 0, 0});
    return report.groups.back();
  };
  for (const auto& item : module.named_parameters(true)) {
    const torch::Tensor& p = item.value();
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;
    ModuleSize& g = group(item.key());
    (p.requires_grad() ? g.trainable : g.frozen) += p.numel();
    (p.requires_grad() ? report.total.trainable : report.total.frozen) += p.numel();
  }
  for (const auto& item : module.named_buffers(true)) {
    const torch::Tensor& b = item.value();
    if (!b.defined() || !seen.insert(b.unsafeGetTensorImpl()).second) continue;
    group(item.key()).buffers += b.numel();
    report.total.buffers += b.numel();
  }
  return report;
}

}  // namespace segrun::models
