// libFuzzer target: CLIP's BPE tokenizer (models/tokenizer): text cleaning, word split, BPE
// encode, decode and the [1, 77] tokenize with truncation. Input: arbitrary bytes as "UTF-8".
// Properties: ids are in the vocabulary; tokenize(truncate) is [SOT] + encode() + [EOT], cut to
// the context (EOT last) and zero padded. ("<|endoftext|>" in the text is CLIP's special token.)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/error.h"
#include "fuzz/fuzz_util.h"
#include "models/clip/tokenizer.h"

using segrun::fuzz::fuzz_check;
using segrun::models::ClipTokenizer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tokenizer = std::make_unique<ClipTokenizer>();
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<int64_t> ids;
  try {
    const std::string cleaned = segrun::models::clean_clip_text(text);
    segrun::models::split_clip_words(cleaned);
    ids = tokenizer->encode(text);
  } catch (const segrun::Error&) {
    return 0;  // invalid UTF-8 is refused with a ModelError naming the text
  }
  for (int64_t id : ids) fuzz_check(id >= 0 && id < ClipTokenizer::kVocabSize, "id outside the vocabulary");
  tokenizer->decode(ids);
  const torch::Tensor t = tokenizer->tokenize({text}, ClipTokenizer::kContextLength, /*truncate=*/true);
  fuzz_check(t.size(0) == 1 && t.size(1) == ClipTokenizer::kContextLength, "tokenize shape");
  // clip.tokenize: [SOT] + ids + [EOT], cut to the context with EOT last, zero padded.
  std::vector<int64_t> expected{ClipTokenizer::kStartOfText};
  expected.insert(expected.end(), ids.begin(), ids.end());
  expected.push_back(ClipTokenizer::kEndOfText);
  if (expected.size() > static_cast<size_t>(ClipTokenizer::kContextLength)) {
    expected.resize(ClipTokenizer::kContextLength);
    expected.back() = ClipTokenizer::kEndOfText;
  }
  expected.resize(ClipTokenizer::kContextLength, 0);
  const auto row = t[0].contiguous();
  fuzz_check(std::equal(expected.begin(), expected.end(), row.data_ptr<int64_t>()),
             "tokenize(truncate) differs from [SOT] + encode() + [EOT], cut and padded");
  return 0;
}
