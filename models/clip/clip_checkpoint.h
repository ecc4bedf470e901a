#pragma once
// Import of pretrained weights from an OpenAI CLIP TorchScript archive (RN50.pt, RN101.pt:
// fp16 tensors under `visual.*`, `transformer.*`, ...), by name, into a segrun module.
// Contract: every parameter and buffer of the target must be present in the archive under
// `prefix` + its name with the same shape (num_batches_tracked may be absent), except
//  - those under one of `target_only_prefixes` (modules the archive does not have, such as the
//    ViT's pyramid), which keep their own initialization;
//  - the `grid_keys` tensors ([S*S+1, C] positional embeddings: the ResNet's
//    `attnpool.positional_embedding`, the ViT's `positional_embedding`) whose grid may differ:
//    their spatial rows are resized bilinearly (align_corners = false) to the target's grid, the
//    class row kept (DenseCLIP);
//  - the text `positional_embedding` when the archive has more rows (context positions) than
//    the target: its first rows are kept (DenseCLIP truncates to the context length).
// Archive tensors under `prefix` the target lacks are an error, except those under one of
// `skip_prefixes` (e.g. "attnpool." for a backbone built without attention pooling).
// Values are converted to the target's dtype. Errors throw ModelError naming `model.pretrained`,
// the file and the key. Call before the module is shared with other threads.

#include <torch/torch.h>

#include <string>
#include <vector>

namespace segrun::models {

struct WeightImportOptions {
  std::string path;                               // TorchScript archive
  std::string prefix = "visual.";                 // archive key prefix of the target module
  std::vector<std::string> skip_prefixes;         // target-relative prefixes to ignore in the archive
  std::vector<std::string> target_only_prefixes;  // target tensors the archive does not provide
  std::vector<std::string> grid_keys{"attnpool.positional_embedding"};  // grids resized to the target's
};

struct WeightImportReport {
  int64_t loaded = 0;                // tensors copied
  int64_t skipped = 0;               // archive tensors ignored through skip_prefixes
  int64_t own_init = 0;              // target tensors left to their init (target_only_prefixes)
  std::vector<std::string> resized;  // keys whose shape was adapted
};

WeightImportReport import_torchscript_weights(const WeightImportOptions& options, torch::nn::Module& target);

}  // namespace segrun::models
