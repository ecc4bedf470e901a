// Frozen CLIP class text embeddings with memory and run-directory caches: see text_embeddings.h.
#include "models/clip/text_embeddings.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"

namespace segrun::models {
namespace {

const char* const kTextEmbeddingsFile = "text_embeddings.pt";

// 64-bit FNV-1a, fed bytes or 8-byte words (the word variant only for the weight bytes).
class Fnv1a {
 public:
  void bytes(const void* data, size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) mix(p[i]);
  }
  void text(const std::string& s) {
    bytes(s.data(), s.size());
    mix(0);  // separator: ("ab","c") != ("a","bc")
  }
  void words(const void* data, size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
      uint64_t word = 0;
      std::memcpy(&word, p + i, 8);
      mix(word);
    }
    for (; i < size; ++i) mix(p[i]);
  }
  std::string hex() const {
    std::ostringstream os;
    os << std::hex;
    os.width(16);
    os.fill('0');
    os << hash_;
    return os.str();
  }

 private:
  void mix(uint64_t value) {
    hash_ ^= value;
    hash_ *= 1099511628211ull;
  }
  uint64_t hash_ = 14695981039346656037ull;
};

std::string signature_of(torch::nn::Module& module) {
  Fnv1a hash;
  for (const auto& item : module.named_parameters()) {
    const torch::Tensor value = item.value().detach().to(torch::kCPU).contiguous();
    hash.text(item.key());
    for (int64_t size : value.sizes()) hash.bytes(&size, sizeof(size));
    hash.text(std::string(c10::toString(value.scalar_type())));
    hash.words(value.data_ptr(), value.numel() * value.element_size());
  }
  return hash.hex();
}

}  // namespace

TextEmbeddings::TextEmbeddings(ClipTextEncoder encoder, std::shared_ptr<const ClipTokenizer> tokenizer,
                               TextEmbeddingsOptions options)
    : encoder_(std::move(encoder)), tokenizer_(std::move(tokenizer)), options_(std::move(options)) {
  SEGRUN_CHECK(!encoder_.is_empty(), ModelError, "text embeddings: no text encoder");
  SEGRUN_CHECK(tokenizer_ != nullptr, ModelError, "text embeddings: no tokenizer");
  SEGRUN_CHECK(options_.batch_size > 0, ModelError, "text embeddings: batch_size must be positive");
  prompt("");  // validates the template
  for (auto& parameter : encoder_->parameters()) parameter.requires_grad_(false);
  encoder_->eval();
  weights_signature_ = signature_of(*encoder_);
}

std::string TextEmbeddings::prompt(const std::string& class_name) const {
  std::string text = options_.prompt_template;
  const size_t at = text.find("{}");
  SEGRUN_CHECK(at != std::string::npos, ModelError,
               "text embeddings: prompt template '" << options_.prompt_template << "' has no {} for the class name");
  return text.replace(at, 2, class_name);
}

std::string TextEmbeddings::cache_key(const std::vector<std::string>& class_names) const {
  Fnv1a hash;
  hash.text("segrun text embeddings v1");
  hash.text(options_.prompt_template);
  const int64_t context = encoder_->options().context_length;
  hash.bytes(&context, sizeof(context));
  hash.text(weights_signature_);
  for (const auto& name : class_names) hash.text(name);
  return hash.hex();
}

std::string TextEmbeddings::cache_path() const {
  if (options_.cache_dir.empty()) return "";
  return (std::filesystem::path(options_.cache_dir) / kTextEmbeddingsFile).string();
}

TextEmbeddingsStats TextEmbeddings::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

torch::Tensor TextEmbeddings::get(const std::vector<std::string>& class_names) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string key = cache_key(class_names);
  torch::Tensor raw;
  auto it = memory_.find(key);
  if (it != memory_.end()) {
    raw = it->second;
    ++stats_.memory_hits;
  } else {
    raw = read_disk(key);
    if (raw.defined()) {
      ++stats_.disk_hits;
    } else {
      raw = compute(class_names);
      ++stats_.computed;
      if (!options_.cache_dir.empty()) write_disk(key, class_names, raw);
    }
    memory_[key] = raw;
  }
  const torch::Device device = encoder_->text_projection.device();
  torch::Tensor out = raw.to(device);
  if (options_.normalize && out.size(0) > 0) out = out / out.norm(2, -1, /*keepdim=*/true);
  return out;
}

torch::Tensor TextEmbeddings::compute(const std::vector<std::string>& class_names) {
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  const int64_t count = static_cast<int64_t>(class_names.size());
  const int64_t embed_dim = encoder_->options().embed_dim;
  torch::Tensor raw = torch::empty({count, embed_dim}, torch::kFloat);
  const torch::Device device = encoder_->text_projection.device();
  for (int64_t begin = 0; begin < count; begin += options_.batch_size) {
    const int64_t end = std::min(count, begin + options_.batch_size);
    std::vector<std::string> prompts;
    for (int64_t k = begin; k < end; ++k) prompts.push_back(prompt(class_names[static_cast<size_t>(k)]));
    const torch::Tensor ids = tokenizer_->tokenize(prompts, encoder_->options().context_length);
    raw.slice(0, begin, end).copy_(encoder_->forward(ids.to(device)).to(torch::kCPU, torch::kFloat));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("text embeddings: encoded {} class prompts in {:.2f} s", count, seconds);
  return raw;
}

torch::Tensor TextEmbeddings::read_disk(const std::string& key) const {
  const std::string path = cache_path();
  if (path.empty() || !std::filesystem::is_regular_file(path)) return torch::Tensor();
  try {
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const c10::IValue loaded = torch::pickle_load(bytes);
    const auto dict = loaded.toGenericDict();
    if (dict.at("key").toStringRef() != key) {
      log::info("text embeddings: {} is for other classes or weights; recomputing", path);
      return torch::Tensor();
    }
    torch::Tensor raw = dict.at("embeddings").toTensor();
    if (raw.dim() != 2 || raw.size(1) != encoder_->options().embed_dim) {
      log::warn("text embeddings: {} holds a {} tensor; recomputing", path, c10::str(raw.sizes()));
      return torch::Tensor();
    }
    return raw.to(torch::kFloat).contiguous();
  } catch (const std::exception& e) {
    std::string what = e.what();
    log::warn("text embeddings: cannot read {} ({}); recomputing", path, what.substr(0, what.find('\n')));
    return torch::Tensor();
  }
}

void TextEmbeddings::write_disk(const std::string& key, const std::vector<std::string>& class_names,
                                const torch::Tensor& raw) const {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("key", key);
  dict.insert("template", options_.prompt_template);
  c10::List<std::string> names;
  for (const auto& name : class_names) names.push_back(name);
  dict.insert("classes", names);
  dict.insert("embeddings", raw);
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  std::error_code error;
  std::filesystem::create_directories(options_.cache_dir, error);
  SEGRUN_CHECK(!error, IoError, options_.cache_dir << ": cannot create directory (" << error.message() << ")");
  write_file_atomic(cache_path(), std::string_view(bytes.data(), bytes.size()));
}

}  // namespace segrun::models
