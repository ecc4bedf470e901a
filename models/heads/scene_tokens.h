#pragma once
// CLIP-SP's adaptive prompting (paper Sec. 3.2 and 3.5) as pure tensor functions:
//  - which classes an image contains (the multi-label targets),
//  - the batch-drop ratio schedule r(iter) = max(r_end, r_start * decay^iter),
//  - the k labels each image's scene tokens are built from: the top-k of S_l, with a ratio r of
//    them replaced by ground-truth classes during training (per slot, or per image),
//  - the auxiliary loss targets: for each cell of the 1/32 feature grid, the slot among the k
//    selected labels holding the cell's ground-truth class (ignored when none does).
// Randomness comes from `draws` when given (the segmentor's keyed per-sample uniforms, see
// sample_random.h), else from LibTorch's default generator.
// Pure functions; thread-safe as far as LibTorch ops are.
#include <torch/torch.h>

#include <cstdint>

namespace segrun::models {

struct BatchDropOptions {
  double r_start = 0.9;   // ratio of the batch using ground-truth labels at iteration 0
  double r_end = 0.1;     // floor of the ratio
  double decay = 0.9999;  // per-iteration exponential decay
};

// r(iter) = max(r_end, r_start * decay^iter); 0 when r_start = r_end = 0 (batch drop off).
double batch_drop_ratio(const BatchDropOptions& options, int64_t iter);

// labels int64 [B, H, W] (255 = ignore) -> float [B, K]: 1 where the class has >= 1 pixel.
// DataError for a value outside [0, K) other than 255 (checked on the CPU; on a GPU the loader
// has checked them, and CUDA's device-side assert stops any other).
torch::Tensor present_classes(const torch::Tensor& labels, int64_t num_classes);

// The k label indices [B, k] (int64) of each image's scene tokens, ordered by descending
// probability. probs [B, K] in [0, 1]. When `present` ([B, K] multi-hot) is defined and
// drop_ratio > 0, each image independently (probability drop_ratio) takes its labels from the
// ground truth: k of its present classes chosen uniformly at random when it has >= k, else all of
// them plus its highest-probability absent classes to fill the k slots. `draws` [B, 1 + K] uniform
// in [0, 1) (column 0: the drop decision, the rest: the random order of the present classes); when
// undefined they are drawn from LibTorch's default generator.
torch::Tensor select_scene_labels(const torch::Tensor& probs, int64_t k, const torch::Tensor& present = {},
                                  double drop_ratio = 0.0, const torch::Tensor& draws = {});

// The paper's batch drop, read literally (Sec. 3.5: "mask the batch of top-k labels from S_l and
// replace them with labels sampled from the ground-truth"), model.clip_sp.batch_drop.mode =
// "slots": each of the k slots of each image's top-k (descending probability) is, with
// probability drop_ratio (draws[b, j] < r), replaced by a class of the image's ground truth not
// already among its labels, chosen uniformly (by draws[b, k + j]); a slot with no such class left
// keeps its label. Replaced slots keep their position. draws [B, 2k] uniform in [0, 1), best on
// the host (the slots are filled there: on a GPU the host waits for the top-k once, and the result
// goes back in one asynchronous copy). Returns, on probs' device, the labels [B, k] (int64) and
// which slots hold a ground-truth class [B, k] (bool).
struct SceneSelection {
  torch::Tensor labels;
  torch::Tensor from_ground_truth;
};
SceneSelection replace_scene_slots(const torch::Tensor& probs, int64_t k, const torch::Tensor& present,
                                   double drop_ratio, const torch::Tensor& draws);

// Auxiliary-loss targets [B, h, w] (int64): labels [B, H, W] are resized to h x w by nearest
// neighbour (source pixel floor(i * H / h)); a cell whose class equals selected[b, i] gets i,
// every other cell (class not selected, or 255) gets 255.
torch::Tensor scene_aux_targets(const torch::Tensor& labels, const torch::Tensor& selected, int64_t h, int64_t w);

}  // namespace segrun::models
