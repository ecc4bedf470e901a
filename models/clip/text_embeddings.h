#pragma once
// Class text embeddings for a run: each class name goes into a prompt template ("a photo of a
// {}." by default), is tokenized (ClipTokenizer, context = the encoder's) and encoded once by a
// frozen CLIP text encoder. The constructor freezes the encoder (requires_grad false on every
// parameter, eval mode); embeddings are computed under NoGradGuard.
// Caching: in memory per class list, and, when `cache_dir` is set (no segmentor sets it today;
// tests do), on disk in
// `<cache_dir>/text_embeddings.pt` (torch::pickle_save dict: key, template, classes, raw
// embeddings [K, E] float32), written atomically. The file is used only when its key matches:
// the key hashes the template, the class names in order and a signature of the encoder's weights
// (FNV-1a over every parameter's name, shape and bytes), so new weights or classes recompute
// and overwrite it. An unreadable file is recomputed with a warning.
// Output: float32 [K, E] on the encoder's device, rows L2-normalized when `normalize` (the
// default: CLIP compares image and text features by cosine); the cache holds the raw rows.
// Threading: get() is serialized by a mutex; the encoder must not be used elsewhere meanwhile.
// Several ranks may share a cache_dir: each computes or reads the same bytes, writes are atomic.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "models/clip/clip_text.h"
#include "models/clip/tokenizer.h"

namespace segrun::models {

struct TextEmbeddingsOptions {
  std::string prompt_template = "a photo of a {}.";  // "{}" stands for the class name
  std::string cache_dir;                             // empty: memory cache only
  bool normalize = true;                             // L2-normalize each returned row
  int64_t batch_size = 64;                           // prompts per encoder forward
};

struct TextEmbeddingsStats {
  int64_t computed = 0;     // class lists run through the encoder
  int64_t disk_hits = 0;    // class lists read from <cache_dir>/text_embeddings.pt
  int64_t memory_hits = 0;  // class lists served from memory
};

class TextEmbeddings {
 public:
  TextEmbeddings(ClipTextEncoder encoder, std::shared_ptr<const ClipTokenizer> tokenizer,
                 TextEmbeddingsOptions options = {});

  // [K, embed_dim] for `class_names` in order (see the header paragraph).
  torch::Tensor get(const std::vector<std::string>& class_names);
  // The prompt of one class name; ModelError if the template has no "{}".
  std::string prompt(const std::string& class_name) const;
  // Hex key of a class list under this template and encoder.
  std::string cache_key(const std::vector<std::string>& class_names) const;
  std::string cache_path() const;  // "" without cache_dir
  TextEmbeddingsStats stats() const;

 private:
  torch::Tensor compute(const std::vector<std::string>& class_names);
  torch::Tensor read_disk(const std::string& key) const;  // undefined when absent or stale
  void write_disk(const std::string& key, const std::vector<std::string>& class_names, const torch::Tensor& raw) const;

  ClipTextEncoder encoder_;
  std::shared_ptr<const ClipTokenizer> tokenizer_;
  TextEmbeddingsOptions options_;
  std::string weights_signature_;
  mutable std::mutex mutex_;
  std::map<std::string, torch::Tensor> memory_;  // key -> raw embeddings
  TextEmbeddingsStats stats_;
};

}  // namespace segrun::models
