#pragma once
// Shared fixtures of the Mask2Former-family model tests (mask2former_test, mta_clip_test): a tiny
// Mask2Former config that builds in milliseconds, and colour-coded synthetic batches a tiny model
// learns in a few dozen steps. Test-only; uses torch's global RNG.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>

#include "core/config.h"

namespace segrun::models::test_fixtures {

// CLIP RN50 layout at width 8 + a Mask2Former of 8 queries, hidden 32, 3 decoder layers, 1
// encoder layer, 256 points; plain BatchNorm (single process).
inline ModelConfig tiny_mask2former_config(const std::string& head = "mask2former") {
  ModelConfig config;
  config.backbone = "clip_rn50";
  config.width = 8;
  config.head = head;
  config.norm = "bn";
  Mask2FormerConfig& m = config.mask2former;
  m.num_queries = 8;
  m.hidden_dim = 32;
  m.dec_layers = 3;
  m.enc_layers = 1;
  m.heads = 4;
  m.enc_points = 2;
  m.enc_ffn = 64;
  m.dec_ffn = 64;
  m.num_points = 256;
  return config;
}

// Images [B, 3, S, S] whose two classes (of 3) are vertical halves split at a random column, each
// class lighting its own colour channel, with noise; labels [B, S, S].
inline std::pair<torch::Tensor, torch::Tensor> colour_split_batch(int64_t batch, int64_t size) {
  torch::Tensor images = torch::zeros({batch, 3, size, size});
  torch::Tensor labels = torch::zeros({batch, size, size}, torch::kLong);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t split = torch::randint(size / 4, 3 * size / 4, {1}).item<int64_t>();
    const int64_t left = torch::randint(0, 3, {1}).item<int64_t>();
    const int64_t right = (left + 1 + torch::randint(0, 2, {1}).item<int64_t>()) % 3;
    images[b][left].narrow(1, 0, split).fill_(1.5);
    images[b][right].narrow(1, split, size - split).fill_(1.5);
    labels[b].narrow(1, 0, split).fill_(left);
    labels[b].narrow(1, split, size - split).fill_(right);
  }
  images += 0.1 * torch::randn_like(images);
  return {images, labels};
}

}  // namespace segrun::models::test_fixtures
