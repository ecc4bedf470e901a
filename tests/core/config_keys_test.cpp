// Every key of the schema, driven by config_key_infos(): its description is complete and agrees
// with the defaults; a value other than the default, chosen within the key's range or choices,
// set by an override survives to_toml -> parse_config, and config_changes reports exactly that
// key. Keys for which the automatic choice cannot work are listed below with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "core/config.h"
#include "core/config_changes.h"
#include "core/error.h"

namespace segrun {
namespace {

// Keys whose automatic value breaks a rule between keys: the value used instead, and why.
const std::map<std::string, std::pair<std::string, std::string>> kChosenByHand{
    {"eval.stride", {"[256, 256]", "doubled, the stride would pass eval.crop (512) and leave pixels unpredicted"}},
    {"model.vit.out_indices",
     {"[2, 5, 8, 11]", "doubled, the block indices would pass model.vit.layers (12); they must also increase"}},
};

// Keys that cannot change alone: the overrides that must come with them, and why.
const std::map<std::string, std::pair<std::vector<std::string>, std::string>> kNeedsCompanions{
    {"train.save_best", {{"data.val_store=/segrun-keys-test/val"}, "the best checkpoint is chosen by validation"}},
};

const std::set<std::string> kTypes{"int",    "float",    "bool",  "string",  "path",
                                   "int[2]", "float[2]", "int[]", "float[]", "string[]"};

bool in_range(const KeyInfo& info, double v) {
  return (info.min_exclusive ? v > info.min : v >= info.min) && v <= info.max;
}

// "'ade20k'" -> "ade20k" (config_values writes strings as TOML literals or basic strings).
std::string unquote(const std::string& toml) { return toml.size() >= 2 ? toml.substr(1, toml.size() - 2) : toml; }

std::string quote(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) out += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return out + "\"";
}

// "[ 0.5, 2.0 ]" -> {0.5, 2.0}; "1e-06" -> {1e-06}.
std::vector<double> numbers_of(const std::string& toml) {
  std::string text = toml;
  std::replace_if(
      text.begin(), text.end(), [](char c) { return c == '[' || c == ']' || c == ','; }, ' ');
  std::istringstream in(text);
  std::vector<double> values;
  for (double v; in >> v;) values.push_back(v);
  return values;
}

std::string number_text(double v, bool integer) {
  if (integer) return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  std::string text(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
  return text.find_first_of(".e") == std::string::npos ? text + ".0" : text;
}

// Another number in range: twice the default (1 or 0.5 for 0), else half of it; nullopt-like
// NaN when neither is.
double other_number(const KeyInfo& info, double v, bool integer) {
  const double doubled = v == 0 ? (integer ? 1.0 : 0.5) : v * 2;
  if (in_range(info, doubled)) return doubled;
  const double halved = integer ? std::floor(v / 2) : v / 2;
  if (halved != v && in_range(info, halved)) return halved;
  return std::nan("");
}

// A TOML value for `info` other than its default, within its range or choices ("" when none).
std::string automatic_value(const KeyInfo& info) {
  const bool integer = info.type.rfind("int", 0) == 0;
  if (info.type == "bool") return info.default_value == "true" ? "false" : "true";
  if (info.type == "path") return quote("/segrun-keys-test/" + info.key);
  if (info.type == "string") {
    if (info.choices.empty()) return quote(unquote(info.default_value) + "_other");
    for (const std::string& c : info.choices)
      if (c != unquote(info.default_value)) return quote(c);
    return "";
  }
  if (info.type == "string[]") return R"(["segrun_keys_test"])";  // every default is []
  std::vector<std::string> texts;
  for (const double v : numbers_of(info.default_value)) {
    const double other = other_number(info, v, integer);
    if (std::isnan(other)) return "";
    texts.push_back(number_text(other, integer));
  }
  if (info.type == "int" || info.type == "float") return texts.empty() ? "" : texts.front();
  std::string list;
  for (const std::string& t : texts) list += (list.empty() ? "" : ", ") + t;
  return "[" + list + "]";
}

std::vector<std::string> keys_of(const std::vector<ConfigChange>& changes) {
  std::vector<std::string> keys;
  for (const ConfigChange& c : changes) keys.push_back(c.key);
  return keys;
}

TEST(ConfigKeys, EveryKeyIsDescribedAndItsDefaultIsValid) {
  const std::vector<KeyInfo> infos = config_key_infos();
  const auto defaults = config_values(Config{});
  ASSERT_EQ(infos.size(), defaults.size());
  std::set<std::string> helps;
  for (size_t i = 0; i < infos.size(); ++i) {
    const KeyInfo& info = infos[i];
    SCOPED_TRACE(info.key);
    EXPECT_EQ(info.key, defaults[i].first);  // schema order
    EXPECT_EQ(info.default_value, defaults[i].second);
    EXPECT_TRUE(kTypes.count(info.type)) << info.type;
    EXPECT_FALSE(info.help.empty());
    EXPECT_EQ(info.help.find('\n'), std::string::npos);
    EXPECT_TRUE(helps.insert(info.help).second) << "the same help as another key: " << info.help;
    EXPECT_LE(info.min, info.max);
    if (!info.choices.empty()) {
      EXPECT_EQ(info.type, "string");
      EXPECT_NE(std::find(info.choices.begin(), info.choices.end(), unquote(info.default_value)), info.choices.end());
    }
    if (info.type != "string" && info.type != "path" && info.type != "string[]" && info.type != "bool") {
      for (const double v : numbers_of(info.default_value)) EXPECT_TRUE(in_range(info, v)) << v;
    }
  }
}

TEST(ConfigKeys, ListsOfExceptionsNameRealKeysThatNeedThem) {
  const std::vector<KeyInfo> infos = config_key_infos();
  const auto info_of = [&infos](const std::string& key) {
    const auto it = std::find_if(infos.begin(), infos.end(), [&key](const KeyInfo& k) { return k.key == key; });
    EXPECT_NE(it, infos.end()) << key << " is no key";
    return it == infos.end() ? KeyInfo{} : *it;
  };
  // The automatic value of each listed key is refused alone: the entry is still needed.
  for (const auto& [key, why] : kChosenByHand)
    EXPECT_THROW(parse_config("", "keys.toml", {key + "=" + automatic_value(info_of(key))}), ConfigError) << key;
  for (const auto& [key, why] : kNeedsCompanions)
    EXPECT_THROW(parse_config("", "keys.toml", {key + "=" + automatic_value(info_of(key))}), ConfigError) << key;
}

TEST(ConfigKeys, EveryKeySurvivesTheRoundTripAndIsTheOnlyChange) {
  const Config defaults = parse_config("", "defaults.toml");
  for (const KeyInfo& info : config_key_infos()) {
    SCOPED_TRACE(info.key);
    const auto by_hand = kChosenByHand.find(info.key);
    const std::string value = by_hand != kChosenByHand.end() ? by_hand->second.first : automatic_value(info);
    ASSERT_FALSE(value.empty()) << "no value other than the default " << info.default_value << " in "
                                << key_range_text(info);
    std::vector<std::string> overrides;
    std::set<std::string> expected{info.key};
    if (const auto companions = kNeedsCompanions.find(info.key); companions != kNeedsCompanions.end()) {
      for (const std::string& o : companions->second.first) {
        overrides.push_back(o);
        expected.insert(o.substr(0, o.find('=')));
      }
    }
    overrides.push_back(info.key + "=" + value);

    Config changed;
    try {
      changed = parse_config("", "keys.toml", overrides);
    } catch (const ConfigError& e) {
      ADD_FAILURE() << "override " << info.key << "=" << value << " refused: " << e.what();
      continue;
    }
    const std::vector<ConfigChange> changes = config_changes(defaults, changed);
    const std::vector<std::string> keys = keys_of(changes);
    EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()), expected);
    EXPECT_EQ(keys.size(), expected.size());
    for (const ConfigChange& c : changes) {
      if (c.key == info.key) {
        EXPECT_EQ(c.before, info.default_value);
      }
    }

    const std::string toml = to_toml(changed);
    Config back;
    try {
      back = parse_config(toml, "round-trip.toml");
    } catch (const ConfigError& e) {
      ADD_FAILURE() << "to_toml's output refused: " << e.what() << "\n" << toml;
      continue;
    }
    EXPECT_TRUE(config_changes(changed, back).empty()) << keys_of(config_changes(changed, back)).front();
    EXPECT_EQ(to_toml(back), toml);
  }
}

}  // namespace
}  // namespace segrun
