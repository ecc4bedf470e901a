// Run ids, hashes and run folder names (sweeps/run_naming.h).
#include "sweeps/run_naming.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace segrun::sweeps {
namespace {

uint64_t fnv1a(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // MurmurHash3's fmix64 finalizer: FNV-1a alone changes few high bits when only the last
  // character differs (the seed), which makes ids of sibling runs look alike.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

}  // namespace

std::string hash_hex(const std::string& text) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(fnv1a(text)));
  return buf;
}

bool is_scheduling_key(const std::string& key) { return key.rfind("cluster.", 0) == 0; }

std::string run_id(const Overrides& overrides, uint64_t seed) {
  std::string text;
  for (const auto& [key, value] : overrides) {
    if (is_scheduling_key(key)) continue;  // where a run executes is not what it computes
    text += key + "=" + value + "\n";
  }
  text += "train.seed=" + std::to_string(seed) + "\n";
  return hash_hex(text).substr(0, 10);
}

namespace {

constexpr size_t kMaxSlugChars = 64;  // with a one-digit seed; a run folder's name is "<id>-<slug>"

// The value as it reads in a folder name: strings without quotes and paths by their file name
// ("pretrained/RN50.pt" -> "RN50.pt"), arrays as their elements joined by 'x' ("[640, 640]" ->
// "640x640"); characters other than letters, digits, '.', '-' and '_' become '-'.
std::string slug_value(const std::string& canonical) {
  std::string text;
  if (!canonical.empty() && canonical.front() == '[') {
    for (char c : canonical.substr(1, canonical.size() - 2)) {
      if (c == ',')
        text += 'x';
      else if (c != ' ' && c != '"')
        text += c;
    }
  } else {
    text = display_value(canonical);
    const auto slash = text.find_last_of('/');
    if (slash != std::string::npos && slash + 1 < text.size()) text = text.substr(slash + 1);
  }
  for (char& c : text)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '-';
  return text;
}

// A key as it reads in a folder name: its last component ("dropout"), or as many trailing
// components as tell it apart from the other swept keys ("data.crop" and "eval.crop").
std::string slug_key(const std::string& key, const std::vector<std::string>& keys) {
  size_t start = key.size();
  while (true) {
    start = start == 0 ? std::string::npos : key.rfind('.', start - 1);
    const std::string suffix = start == std::string::npos ? key : key.substr(start + 1);
    const bool shared = std::any_of(keys.begin(), keys.end(), [&](const std::string& other) {
      return other != key &&
             (other == suffix || (other.size() > suffix.size() &&
                                  other.compare(other.size() - suffix.size(), suffix.size(), suffix) == 0 &&
                                  other[other.size() - suffix.size() - 1] == '.'));
    });
    if (!shared || start == std::string::npos) return suffix;
  }
}

// The value of key in config, "" when it lacks the key (a value of its own).
std::string value_or_absent(const Overrides& config, const std::string& key) {
  auto it = config.find(key);
  return it == config.end() ? "" : "=" + it->second;
}

}  // namespace

std::vector<std::string> configuration_slugs(const std::vector<Overrides>& configurations,
                                             const std::vector<std::string>& swept_keys) {
  // Which keys tell the configurations apart: keys with more distinct values first (then by
  // name), each kept unless the keys kept before it already determine its value in every
  // configuration (a backbone's weights file, the ViT variant's crop).
  std::vector<std::string> keys;
  std::map<std::string, size_t> distinct;
  for (const auto& key : swept_keys) {
    if (is_scheduling_key(key) || std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
    std::set<std::string> values;
    for (const auto& c : configurations) values.insert(value_or_absent(c, key));
    keys.push_back(key);
    distinct[key] = values.size();
  }
  std::vector<std::string> by_distinct = keys;
  std::sort(by_distinct.begin(), by_distinct.end(), [&](const std::string& a, const std::string& b) {
    return distinct[a] != distinct[b] ? distinct[a] > distinct[b] : a < b;
  });
  std::set<std::string> distinguishing;
  for (const auto& key : by_distinct) {
    std::map<std::string, std::string> value_of;  // the kept keys' values -> this key's value
    bool determined = true;
    for (const auto& c : configurations) {
      std::string kept;
      for (const auto& k : distinguishing) kept += value_or_absent(c, k) + "\n";
      auto [it, fresh] = value_of.emplace(kept, value_or_absent(c, key));
      if (!fresh && it->second != value_or_absent(c, key)) determined = false;
    }
    if (!determined) distinguishing.insert(key);
  }

  std::vector<std::string> slugs;
  for (const auto& config : configurations) {
    std::string first, then;  // the distinguishing keys' parts, the others' (sorted by key)
    for (const auto& [key, value] : config) {
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) continue;
      const std::string part = slug_key(key, keys) + slug_value(value);
      std::string& to = distinguishing.count(key) ? first : then;
      to += (to.empty() ? "" : "_") + part;
    }
    const std::string full = first + (first.empty() || then.empty() ? "" : "_") + then;
    if (full.size() + std::string("_s0").size() <= kMaxSlugChars) {
      slugs.push_back(full);
      continue;
    }
    // Too long: the distinguishing keys only (all of them when one configuration has none), cut
    // to fit, and a short hash of the full overrides so that the name stays unique, before the seed.
    std::string text;
    for (const auto& [key, value] : config)
      if (!is_scheduling_key(key)) text += key + "=" + value + "\n";
    const std::string tag = "~" + hash_hex(text).substr(0, 6);
    const size_t room = kMaxSlugChars - tag.size() - std::string("_s0").size();
    slugs.push_back((first.empty() ? full : first).substr(0, room) + tag);
  }
  return slugs;
}

std::string run_slug(const std::string& configuration_slug, uint64_t seed) {
  return configuration_slug + (configuration_slug.empty() ? "" : "_") + "s" + std::to_string(seed);
}

}  // namespace segrun::sweeps
