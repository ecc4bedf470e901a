// CLIP byte-level BPE tokenizer: see tokenizer.h.
#include "models/clip/tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <sstream>
#include <utility>

#include "core/error.h"

#ifndef SEGRUN_CLIP_VOCAB_PATH
#error "SEGRUN_CLIP_VOCAB_PATH must be defined by models/CMakeLists.txt"
#endif

namespace segrun::models {
namespace {

constexpr int kMergeCount = 49152 - 256 - 2;  // lines[1 : 49152-256-2+1]
constexpr size_t kMaxCachedWords = 1 << 18;
const char* const kEndOfWord = "</w>";

// ---- UTF-8 ---------------------------------------------------------------------------------------

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string to_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(out, c);
  return out;
}

// Strict decoding (no overlongs, surrogates or values above U+10FFFF), like Python's str.
std::u32string from_utf8(const std::string& text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  const auto fail = [&text](size_t at) {
    SEGRUN_THROW(ModelError, "tokenizer: invalid UTF-8 at byte " << at << " of text '" << text << "'");
  };
  while (i < text.size()) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    int extra = 0;
    char32_t c = 0;
    if (b0 < 0x80) {
      c = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      extra = 1, c = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      extra = 2, c = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      extra = 3, c = b0 & 0x07;
    } else {
      fail(i);
    }
    if (i + static_cast<size_t>(extra) >= text.size()) fail(i);
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if ((b & 0xC0) != 0x80) fail(i);
      c = (c << 6) | (b & 0x3F);
    }
    static const char32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (c < kMin[extra] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) fail(i);
    out.push_back(c);
    i += static_cast<size_t>(extra) + 1;
  }
  return out;
}

// ---- character classes (CLIP's \s, \p{L}, \p{N}) -------------------------------------------------

bool in(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

// Python's str.isspace(), which re's \s and str.strip() use.
bool is_space(char32_t c) {
  return in(c, 0x09, 0x0D) || in(c, 0x1C, 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 || in(c, 0x2000, 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_number(char32_t c) {
  if (c < 0x80) return in(c, '0', '9');
  static const char32_t kRanges[][2] = {
      {0xB2, 0xB3},     {0xB9, 0xB9},     {0xBC, 0xBE},     {0x660, 0x669},   {0x6F0, 0x6F9},     {0x7C0, 0x7C9},
      {0x966, 0x96F},   {0x9E6, 0x9EF},   {0xA66, 0xA6F},   {0xAE6, 0xAEF},   {0xB66, 0xB6F},     {0xBE6, 0xBF2},
      {0xC66, 0xC6F},   {0xCE6, 0xCEF},   {0xD66, 0xD78},   {0xE50, 0xE59},   {0xED0, 0xED9},     {0xF20, 0xF33},
      {0x1040, 0x1049}, {0x1369, 0x137C}, {0x17E0, 0x17E9}, {0x1810, 0x1819}, {0x2070, 0x2070},   {0x2074, 0x2079},
      {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF},   {0x2776, 0x2793},
      {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229},   {0x3248, 0x324F},
      {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xFF10, 0xFF19}, {0x1D7CE, 0x1D7FF}, {0x1F100, 0x1F10C}};
  for (const auto& r : kRanges) {
    if (in(c, r[0], r[1])) return true;
  }
  return false;
}

// Non-ASCII code points that are neither letters nor numbers: controls, punctuation, symbols,
// combining marks, emoji (blocks, with the letters inside them carved out).
bool is_other_non_ascii(char32_t c) {
  if (in(c, 0x80, 0xBF)) return c != 0xAA && c != 0xB5 && c != 0xBA;
  if (c == 0xD7 || c == 0xF7) return true;
  static const char32_t kRanges[][2] = {
      {0x2C2, 0x2C5},   {0x2D2, 0x2DF},   {0x2E5, 0x2EB},   {0x2ED, 0x2ED},   {0x2EF, 0x36F},     {0x483, 0x489},
      {0x591, 0x5C7},   {0x5F3, 0x5F4},   {0x600, 0x61F},   {0x64B, 0x65F},   {0x66A, 0x66D},     {0x6D4, 0x6D4},
      {0x964, 0x965},   {0xE3F, 0xE3F},   {0x2000, 0x206F}, {0x207A, 0x207E}, {0x208A, 0x208E},   {0x20A0, 0x20FF},
      {0x2190, 0x245F}, {0x249C, 0x24E9}, {0x2500, 0x2775}, {0x2794, 0x2BFF}, {0x2E00, 0x2E7F},   {0x3001, 0x3004},
      {0x3008, 0x3020}, {0x3030, 0x3030}, {0x303D, 0x303F}, {0x3099, 0x309C}, {0x30A0, 0x30A0},   {0x30FB, 0x30FB},
      {0xFD3E, 0xFD3F}, {0xFE00, 0xFE0F}, {0xFE10, 0xFE1F}, {0xFE20, 0xFE6F}, {0xFEFF, 0xFEFF},   {0xFF01, 0xFF0F},
      {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65}, {0xFFE0, 0xFFFF}, {0x1F000, 0x1FAFF}, {0xE0000, 0xE007F}};
  for (const auto& r : kRanges) {
    if (in(c, r[0], r[1])) return true;
  }
  return false;
}

bool is_letter(char32_t c) {
  if (c < 0x80) return in(c, 'a', 'z') || in(c, 'A', 'Z');
  return !is_space(c) && !is_number(c) && !is_other_non_ascii(c);
}

char32_t to_lower(char32_t c) {
  if (in(c, 'A', 'Z')) return c + 0x20;
  if (c < 0xC0) return c;
  if (in(c, 0xC0, 0xDE) && c != 0xD7) return c + 0x20;
  if (in(c, 0x100, 0x137) || in(c, 0x14A, 0x177)) return c | 1;
  if (in(c, 0x139, 0x148) || in(c, 0x179, 0x17E)) return (c & 1) ? c + 1 : c;
  if (c == 0x178) return 0xFF;
  if (c == 0x386) return 0x3AC;
  if (in(c, 0x388, 0x38A)) return c + 0x25;
  if (c == 0x38C) return 0x3CC;
  if (in(c, 0x38E, 0x38F)) return c + 0x3F;
  if (in(c, 0x391, 0x3AB) && c != 0x3A2) return c + 0x20;
  if (in(c, 0x400, 0x40F)) return c + 0x50;
  if (in(c, 0x410, 0x42F)) return c + 0x20;
  if (in(c, 0xFF21, 0xFF3A)) return c + 0x20;
  return c;
}

// ---- HTML entities -------------------------------------------------------------------------------

// Python's html.unescape for a numeric reference: Windows-1252 for 0x80-0x9F, U+FFFD for
// invalid values, nothing for the code points HTML forbids. Returns false when dropped.
bool numeric_reference(uint64_t value, char32_t& out) {
  static const std::pair<char32_t, char32_t> kCp1252[] = {
      {0x00, 0xFFFD}, {0x0D, 0x0D},   {0x80, 0x20AC}, {0x81, 0x81},   {0x82, 0x201A}, {0x83, 0x0192}, {0x84, 0x201E},
      {0x85, 0x2026}, {0x86, 0x2020}, {0x87, 0x2021}, {0x88, 0x02C6}, {0x89, 0x2030}, {0x8A, 0x0160}, {0x8B, 0x2039},
      {0x8C, 0x0152}, {0x8D, 0x8D},   {0x8E, 0x017D}, {0x8F, 0x8F},   {0x90, 0x90},   {0x91, 0x2018}, {0x92, 0x2019},
      {0x93, 0x201C}, {0x94, 0x201D}, {0x95, 0x2022}, {0x96, 0x2013}, {0x97, 0x2014}, {0x98, 0x02DC}, {0x99, 0x2122},
      {0x9A, 0x0161}, {0x9B, 0x203A}, {0x9C, 0x0153}, {0x9D, 0x9D},   {0x9E, 0x017E}, {0x9F, 0x0178}};
  for (const auto& entry : kCp1252) {
    if (entry.first == value) {
      out = entry.second;
      return true;
    }
  }
  if (value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
    out = 0xFFFD;
    return true;
  }
  const auto c = static_cast<char32_t>(value);
  if (in(c, 0x1, 0x8) || c == 0xB || in(c, 0xE, 0x1F) || in(c, 0x7F, 0x9F) || in(c, 0xFDD0, 0xFDEF) ||
      (c & 0xFFFE) == 0xFFFE) {
    return false;
  }
  out = c;
  return true;
}

bool equals_ascii(const std::u32string& text, size_t pos, size_t len, const char* ascii) {
  size_t k = 0;
  for (; ascii[k] != '\0'; ++k) {
    if (k >= len || text[pos + k] != static_cast<char32_t>(ascii[k])) return false;
  }
  return k == len;
}

struct NamedEntity {
  const char* name;
  char32_t value;
  bool legacy;  // also recognised without the semicolon (HTML5's Latin-1 legacy names)
};

// One pass of Python's html.unescape, restricted to the entity names below.
std::u32string html_unescape(const std::u32string& text) {
  static const NamedEntity kNamed[] = {
      {"amp", '&', true},       {"lt", '<', true},         {"gt", '>', true},        {"quot", '"', true},
      {"apos", '\'', false},    {"nbsp", 0xA0, true},      {"copy", 0xA9, true},     {"reg", 0xAE, true},
      {"deg", 0xB0, true},      {"laquo", 0xAB, true},     {"raquo", 0xBB, true},    {"times", 0xD7, true},
      {"trade", 0x2122, false}, {"hellip", 0x2026, false}, {"ndash", 0x2013, false}, {"mdash", 0x2014, false},
      {"lsquo", 0x2018, false}, {"rsquo", 0x2019, false},  {"ldquo", 0x201C, false}, {"rdquo", 0x201D, false}};
  const auto is_hex = [](char32_t d) { return in(d, '0', '9') || in(d, 'a', 'f') || in(d, 'A', 'F'); };
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    const size_t n = text.size();
    if (i + 1 < n && text[i + 1] == '#') {
      const bool hex = i + 2 < n && (text[i + 2] == 'x' || text[i + 2] == 'X');
      size_t k = i + (hex ? 3 : 2);
      uint64_t value = 0;
      const size_t digits_start = k;
      while (k < n && (hex ? is_hex(text[k]) : in(text[k], '0', '9'))) {
        const char32_t d = text[k];
        const uint64_t digit = in(d, '0', '9') ? d - '0' : (in(d, 'a', 'f') ? d - 'a' + 10 : d - 'A' + 10);
        value = std::min<uint64_t>(value * (hex ? 16 : 10) + digit, 0xFFFFFFFFull);
        ++k;
      }
      if (k == digits_start) {
        out.push_back(text[i++]);
        continue;
      }
      if (k < n && text[k] == ';') ++k;
      char32_t c = 0;
      if (numeric_reference(value, c)) out.push_back(c);
      i = k;
      continue;
    }
    size_t len = 0;
    while (len < 32 && i + 1 + len < n) {
      const char32_t c = text[i + 1 + len];
      if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
      ++len;
    }
    const bool semicolon = i + 1 + len < n && text[i + 1 + len] == ';';
    bool replaced = false;
    if (semicolon) {
      for (const auto& entity : kNamed) {
        if (equals_ascii(text, i + 1, len, entity.name)) {
          out.push_back(entity.value);
          i += len + 2;
          replaced = true;
          break;
        }
      }
    }
    // Without (or with an unknown) name + ';': the longest legacy name that prefixes it.
    for (size_t prefix = len; !replaced && prefix >= 2; --prefix) {
      for (const auto& entity : kNamed) {
        if (entity.legacy && equals_ascii(text, i + 1, prefix, entity.name)) {
          out.push_back(entity.value);
          i += prefix + 1;
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out.push_back(text[i++]);
  }
  return out;
}

// CLIP's bytes_to_unicode(): printable bytes stand for themselves, the other 68 map to 256 + n.
std::vector<char32_t> bytes_to_unicode_order(std::vector<int>& bytes_in_order) {
  std::vector<char32_t> stand_in(256, 0);
  std::vector<bool> printable(256, false);
  bytes_in_order.clear();
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  for (int b = 0; b < 256; ++b) {
    if (printable[b]) {
      bytes_in_order.push_back(b);
      stand_in[b] = static_cast<char32_t>(b);
    }
  }
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (!printable[b]) {
      bytes_in_order.push_back(b);
      stand_in[b] = static_cast<char32_t>(256 + n++);
    }
  }
  return stand_in;
}

std::string read_gzip(const std::string& path) {
  SEGRUN_CHECK(std::filesystem::is_regular_file(path), ModelError,
               "tokenizer: vocabulary " << path << ": no such file");
  gzFile file = gzopen(path.c_str(), "rb");
  SEGRUN_CHECK(file != nullptr, ModelError, "tokenizer: vocabulary " << path << ": cannot open");
  std::string content;
  std::vector<char> buffer(1 << 16);
  while (true) {
    const int got = gzread(file, buffer.data(), static_cast<unsigned>(buffer.size()));
    if (got < 0) {
      int code = 0;
      const std::string message = gzerror(file, &code);
      gzclose(file);
      SEGRUN_THROW(ModelError, "tokenizer: vocabulary " << path << ": " << message);
    }
    if (got == 0) break;
    content.append(buffer.data(), static_cast<size_t>(got));
  }
  gzclose(file);
  return content;
}

}  // namespace

std::string default_clip_vocab_path() { return SEGRUN_CLIP_VOCAB_PATH; }

std::string clean_clip_text(const std::string& text) {
  const std::u32string unescaped = html_unescape(html_unescape(from_utf8(text)));
  std::u32string out;
  out.reserve(unescaped.size());
  bool pending_space = false;
  for (char32_t c : unescaped) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(to_lower(c));
  }
  return to_utf8(out);
}

std::vector<std::string> split_clip_words(const std::string& cleaned) {
  const std::u32string text = from_utf8(cleaned);
  std::vector<std::string> words;
  const size_t n = text.size();
  const auto starts_with_at = [&text, n](size_t at, const char* ascii) {
    size_t k = 0;
    for (; ascii[k] != '\0'; ++k) {
      if (at + k >= n || text[at + k] != static_cast<char32_t>(ascii[k])) return size_t{0};
    }
    return k;
  };
  static const char* const kFixed[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  size_t i = 0;
  while (i < n) {
    size_t len = 0;
    for (const char* fixed : kFixed) {
      len = starts_with_at(i, fixed);
      if (len) break;
    }
    if (!len) {
      const char32_t c = text[i];
      if (is_space(c)) {
        ++i;
        continue;
      }
      if (is_letter(c)) {
        while (i + len < n && is_letter(text[i + len])) ++len;
      } else if (is_number(c)) {
        len = 1;
      } else {
        while (i + len < n && !is_space(text[i + len]) && !is_letter(text[i + len]) && !is_number(text[i + len])) ++len;
      }
    }
    words.push_back(to_utf8(text.substr(i, len)));
    i += len;
  }
  return words;
}

ClipTokenizer::ClipTokenizer(const std::string& vocab_path) : vocab_path_(vocab_path) {
  std::vector<int> bytes_in_order;
  const std::vector<char32_t> stand_in = bytes_to_unicode_order(bytes_in_order);
  byte_encoder_.resize(256);
  for (int b = 0; b < 256; ++b) {
    append_utf8(byte_encoder_[b], stand_in[b]);
    byte_decoder_[byte_encoder_[b]] = b;
  }

  const std::string content = read_gzip(vocab_path);
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(kMergeCount);
  size_t pos = content.find('\n');  // line 0 is the version header
  SEGRUN_CHECK(pos != std::string::npos, ModelError, "tokenizer: vocabulary " << vocab_path << ": no merges");
  for (int line = 1; line <= kMergeCount; ++line) {
    const size_t begin = pos + 1;
    SEGRUN_CHECK(begin < content.size(), ModelError,
                 "tokenizer: vocabulary " << vocab_path << ": only " << (line - 1) << " merges, need " << kMergeCount);
    size_t end = content.find('\n', begin);
    if (end == std::string::npos) end = content.size();
    const std::string text = content.substr(begin, end - begin);
    const size_t space = text.find(' ');
    SEGRUN_CHECK(
        space != std::string::npos && space > 0 && space + 1 < text.size() &&
            text.find(' ', space + 1) == std::string::npos,
        ModelError,
        "tokenizer: vocabulary " << vocab_path << ": line " << line << " is not a merge pair: '" << text << "'");
    merges.emplace_back(text.substr(0, space), text.substr(space + 1));
    pos = end;
  }

  decoder_.reserve(kVocabSize);
  for (int b : bytes_in_order) decoder_.push_back(byte_encoder_[b]);
  for (int b : bytes_in_order) decoder_.push_back(byte_encoder_[b] + kEndOfWord);
  for (size_t r = 0; r < merges.size(); ++r) {
    decoder_.push_back(merges[r].first + merges[r].second);
    merge_ranks_.emplace(merges[r].first + " " + merges[r].second, static_cast<int>(r));
  }
  decoder_.push_back("<|startoftext|>");
  decoder_.push_back("<|endoftext|>");
  SEGRUN_CHECK(
      static_cast<int64_t>(decoder_.size()) == kVocabSize, ModelError,
      "tokenizer: vocabulary " << vocab_path << ": " << decoder_.size() << " entries, expected " << kVocabSize);
  for (size_t id = 0; id < decoder_.size(); ++id) encoder_.emplace(decoder_[id], static_cast<int64_t>(id));
}

std::vector<int64_t> ClipTokenizer::bpe(const std::string& word) const {
  if (word == "<|startoftext|>") return {kStartOfText};
  if (word == "<|endoftext|>") return {kEndOfText};
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) return it->second;
  }
  std::vector<std::string> symbols;
  symbols.reserve(word.size());
  for (unsigned char b : word) symbols.push_back(byte_encoder_[b]);
  symbols.back() += kEndOfWord;
  std::string key;
  while (symbols.size() > 1) {
    int best_rank = INT_MAX;
    size_t best = 0;
    for (size_t k = 0; k + 1 < symbols.size(); ++k) {
      key.assign(symbols[k]).append(" ").append(symbols[k + 1]);
      auto it = merge_ranks_.find(key);
      if (it != merge_ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = k;
      }
    }
    if (best_rank == INT_MAX) break;
    // Merge every non-overlapping occurrence of the best pair, left to right.
    const std::string first = symbols[best], second = symbols[best + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t k = 0; k < symbols.size(); ++k) {
      if (k + 1 < symbols.size() && symbols[k] == first && symbols[k + 1] == second) {
        merged.push_back(first + second);
        ++k;
      } else {
        merged.push_back(symbols[k]);
      }
    }
    symbols.swap(merged);
  }
  std::vector<int64_t> ids;
  ids.reserve(symbols.size());
  for (const auto& symbol : symbols) {
    auto it = encoder_.find(symbol);
    SEGRUN_CHECK(it != encoder_.end(), ModelError,
                 "tokenizer: BPE symbol '" << symbol << "' of word '" << word << "' is not in " << vocab_path_);
    ids.push_back(it->second);
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCachedWords) cache_.clear();
  cache_.emplace(word, ids);
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& word : split_clip_words(clean_clip_text(text))) {
    const std::vector<int64_t> word_ids = bpe(word);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  }
  return ids;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string symbols;
  for (int64_t id : ids) {
    SEGRUN_CHECK(id >= 0 && id < vocab_size(), ModelError, "tokenizer: id " << id << " is outside the vocabulary");
    symbols += decoder_[static_cast<size_t>(id)];
  }
  std::string bytes;
  const std::u32string chars = from_utf8(symbols);
  const std::string end_of_word = kEndOfWord;
  const std::u32string end_marker(end_of_word.begin(), end_of_word.end());
  for (size_t k = 0; k < chars.size(); ++k) {
    if (chars.compare(k, end_marker.size(), end_marker) == 0) {
      bytes.push_back(' ');
      k += end_marker.size() - 1;
      continue;
    }
    std::string one;
    append_utf8(one, chars[k]);
    auto it = byte_decoder_.find(one);
    if (it != byte_decoder_.end()) {
      bytes.push_back(static_cast<char>(it->second));
    } else {
      bytes += one;  // special tokens' ASCII characters are their own stand-ins
    }
  }
  return bytes;
}

torch::Tensor ClipTokenizer::tokenize(const std::vector<std::string>& texts, int64_t context_length,
                                      bool truncate) const {
  SEGRUN_CHECK(context_length >= 2, ModelError, "tokenizer: context length " << context_length << " < 2");
  torch::Tensor result = torch::zeros({static_cast<int64_t>(texts.size()), context_length}, torch::kLong);
  auto access = result.accessor<int64_t, 2>();
  for (size_t row = 0; row < texts.size(); ++row) {
    std::vector<int64_t> ids{kStartOfText};
    const std::vector<int64_t> body = encode(texts[row]);
    ids.insert(ids.end(), body.begin(), body.end());
    ids.push_back(kEndOfText);
    if (static_cast<int64_t>(ids.size()) > context_length) {
      SEGRUN_CHECK(truncate, ModelError,
                   "tokenizer: text '" << texts[row] << "' has " << ids.size()
                                       << " tokens, more than the context length " << context_length);
      ids.resize(static_cast<size_t>(context_length));
      ids.back() = kEndOfText;
    }
    for (size_t k = 0; k < ids.size(); ++k) access[static_cast<int64_t>(row)][static_cast<int64_t>(k)] = ids[k];
  }
  return result;
}

}  // namespace segrun::models
