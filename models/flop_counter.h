#pragma once
// Model size and compute, counted from the actual modules: parameter/buffer counts from a
// module's tensors, and the FLOPs of one forward pass observed op by op, with the rules of
// fvcore's FlopCountAnalysis (the CLIP-SP and DenseCLIP papers' "GFLOPs"): one multiply-add is
// one FLOP, and only these ops count (everything else, e.g. add, relu, softmax, pooling other
// than adaptive average, is free, as in fvcore's defaults):
//   convolution (any dim, transposed too)  N * Cout * Cin/groups * prod(kernel) * prod(out spatial)
//                                          (transposed: prod(in spatial) instead); bias free
//   linear                                  prod(input) * out_features
//   matmul, mm, bmm, addmm, baddbmm          prod(batch) * n * k * m (broadcast batch dims)
//   einsum                                   per pairwise step (left to right): the product of the
//                                            sizes of the indices involved, halved when the step
//                                            sums over none (fvcore's einsum_path rule)
//   batch_norm  eval: numel * (2 if affine else 1); training: numel * (5 if affine else 4)
//   group_norm, layer_norm, instance_norm    numel * (5 if affine else 4)
//   upsample_bilinear2d, grid_sampler        4 * output numel
//   upsample_nearest2d                       1 * output numel
//   adaptive_avg_pool2d                      1 * input numel
// baddbmm is not in fvcore's default table (fvcore would skip it); it is counted here as bmm
// because an attention written with it does the same multiply-adds.
// Mechanism: a thread-local at::RecordFunction callback sees every ATen op dispatched on the
// calling thread; only outermost ops count (those not called from inside another op), which is
// what fvcore's JIT trace records: aten::linear is counted once, not again as the addmm it calls.
// Attribution: an op taking a registered parameter (the weight of a conv/linear/norm) belongs to
// that parameter's top-level submodule ("backbone" of "backbone.layer1.0.conv1.weight"); an op
// without one (upsample, matmul of activations) to the submodule of the last op that had one
// ("(input)" before any; "(root)" for tensors registered on the module itself). Exact for sequential models, a close
// approximation otherwise. Threading: count_flops observes only the calling thread; run the forward on it. Callbacks
// are thread-local, so counters on different threads do not see each other.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace segrun::models {

// One counted op kind ("aten::conv2d"): how many outermost calls and their FLOPs.
struct OpFlops {
  std::string op;
  int64_t calls = 0;
  int64_t flops = 0;
};

struct FlopReport {
  int64_t total = 0;                                       // FLOPs (multiply-adds) of the whole pass
  std::vector<OpFlops> by_op;                              // counted ops, most FLOPs first
  std::vector<std::pair<std::string, int64_t>> by_module;  // top-level submodule -> FLOPs, in first-use order
  std::vector<std::pair<std::string, int64_t>> uncounted;  // outermost ops counted as free -> calls, by name
};

// FLOPs of one outermost ATen op by the rules above, from its name ("aten::conv2d"), inputs and
// outputs (the upsampling and grid_sampler rules read the output); nullopt for an op that is
// free. Throws ModelError naming the op when a counted op's arguments have an unexpected form.
std::optional<int64_t> op_flops(const std::string& op, c10::ArrayRef<c10::IValue> inputs,
                                c10::ArrayRef<c10::IValue> outputs);

// Runs `forward` once on the calling thread with the counter active and returns what it saw.
// `module` (optional) names the parameters for the per-submodule attribution; without it
// by_module is empty. Run it under torch::NoGradGuard and with the module in eval() mode to
// count inference, as fvcore's users do.
FlopReport count_flops(const std::function<void()>& forward, const torch::nn::Module* module = nullptr);

// Parameter and buffer element counts of a module (tensors shared between names counted once).
struct ModuleSize {
  std::string name;       // top-level submodule ("backbone"), "(root)" for the module's own tensors
  int64_t trainable = 0;  // parameters with requires_grad
  int64_t frozen = 0;     // parameters without
  int64_t buffers = 0;    // running statistics, cached embeddings, ...
};
struct ParameterReport {
  ModuleSize total;                // name "total"
  std::vector<ModuleSize> groups;  // per top-level submodule, in registration order
};
ParameterReport count_parameters(const torch::nn::Module& module);

}  // namespace segrun::models
