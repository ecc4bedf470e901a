#pragma once
// CLIP's byte-level BPE tokenizer (openai/CLIP simple_tokenizer.py + clip.tokenize), reimplemented:
//  - vocabulary from `bpe_simple_vocab_16e6.txt.gz` (MIT, OpenAI; shipped in models/clip/assets/):
//    the 256 byte characters (bytes_to_unicode order), the same with `</w>`, the first 48,894
//    merges joined, then `<|startoftext|>` = 49406 and `<|endoftext|>` = 49407 (49,408 ids);
//  - cleaning: HTML entities unescaped twice (named: amp lt gt quot apos nbsp and a few
//    typographic ones; numeric &#N; / &#xH; with the Windows-1252 remap of 0x80-0x9F), Unicode
//    whitespace collapsed to one space and stripped, lower-cased (ASCII, Latin-1, Latin
//    Extended-A, Greek, Cyrillic, fullwidth Latin). ftfy is not applied;
//  - words: CLIP's pattern `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|
//    [^\s\p{L}\p{N}]+`, matched by hand. \p{L} and \p{N} are approximated: ASCII letters/digits
//    exactly; non-ASCII code points are letters unless they are whitespace, a number of a
//    table of digit/number blocks, or in a punctuation / symbol / combining-mark / emoji block;
//  - BPE on the UTF-8 bytes of each word (mapped through bytes_to_unicode, `</w>` on the last
//    symbol), merging the lowest-ranked pair first; results are cached per word.
// Errors: ModelError naming the vocabulary file (missing, unreadable, malformed) or the text
// (invalid UTF-8; too long for the context without truncation).
// Threading: a constructed tokenizer is immutable except its word cache, which a mutex guards;
// encode()/tokenize() may be called from several threads.

#include <torch/torch.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace segrun::models {

// The vocabulary shipped with the sources (absolute path fixed at configure time).
std::string default_clip_vocab_path();

// CLIP's text cleaning (unescape, whitespace, lower case) on UTF-8; exposed for tests.
std::string clean_clip_text(const std::string& text);
// CLIP's word split of already-cleaned UTF-8 text; exposed for tests.
std::vector<std::string> split_clip_words(const std::string& cleaned);

class ClipTokenizer {
 public:
  static constexpr int64_t kStartOfText = 49406;
  static constexpr int64_t kEndOfText = 49407;
  static constexpr int64_t kVocabSize = 49408;
  static constexpr int64_t kContextLength = 77;

  explicit ClipTokenizer(const std::string& vocab_path = default_clip_vocab_path());

  // BPE ids of `text` without the start/end tokens.
  std::vector<int64_t> encode(const std::string& text) const;
  // Concatenation of the vocabulary strings of `ids` with `</w>` turned into spaces, bytes
  // decoded (CLIP's decode, for messages and tests).
  std::string decode(const std::vector<int64_t>& ids) const;
  // int64 [N, context_length]: SOT, ids, EOT, zero padding. A text with more than
  // context_length - 2 ids throws ModelError naming it, unless `truncate` (then the last kept
  // position holds EOT, as clip.tokenize does).
  torch::Tensor tokenize(const std::vector<std::string>& texts, int64_t context_length = kContextLength,
                         bool truncate = false) const;

  int64_t vocab_size() const { return static_cast<int64_t>(decoder_.size()); }
  const std::string& vocab_path() const { return vocab_path_; }

 private:
  std::vector<int64_t> bpe(const std::string& word) const;  // word: UTF-8 text of one split word

  std::string vocab_path_;
  std::vector<std::string> byte_encoder_;              // byte -> UTF-8 of its unicode stand-in
  std::unordered_map<std::string, int> byte_decoder_;  // inverse of byte_encoder_
  std::unordered_map<std::string, int64_t> encoder_;   // vocabulary string -> id
  std::vector<std::string> decoder_;                   // id -> vocabulary string
  std::unordered_map<std::string, int> merge_ranks_;   // "left right" -> rank
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;  // word -> ids
};

}  // namespace segrun::models
