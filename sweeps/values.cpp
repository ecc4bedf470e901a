// Canonical values and override sets (sweeps/values.h) and the toml++ side of them
// (sweeps/toml_values.h).
#include "sweeps/values.h"

#include <toml++/toml.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/command_line_value.h"
#include "core/config.h"
#include "core/error.h"
#include "core/format.h"
#include "sweeps/toml_values.h"

namespace segrun::sweeps {

using toml_detail::canonical_of;
using toml_detail::flatten;
using toml_detail::is_float_key;

namespace {

std::string shortest_double(double v) {
  if (v == 0.0) v = 0.0;  // -0.0 trains as 0.0: one value, one run id
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // %g turns whole numbers from 1e1 on into exponents ("1e+01"): print those digit by digit.
  if (s.find('e') != std::string::npos && std::fabs(v) >= 1.0 && std::fabs(v) < 1e16 && v == std::floor(v)) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    s = buf;
  }
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string quote_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// The config keys whose values are floats or lists of floats (model.dropout, train.lr,
// data.ratio, ...): the schema's resolved defaults as TOML say which (every float list has a
// non-empty default).
const std::set<std::string>& float_keys() {
  static const std::set<std::string> keys = [] {
    const Config config;  // defaults
    const toml::table defaults = toml::parse(to_toml(config));
    std::vector<std::pair<std::string, const toml::node*>> flat;
    flatten(defaults, "", flat);
    std::set<std::string> out;
    for (const auto& [key, node] : flat) {
      const toml::array* arr = node->as_array();
      if (node->is_floating_point() || (arr && !arr->empty() && arr->get(0)->is_floating_point())) out.insert(key);
    }
    return out;
  }();
  return keys;
}

}  // namespace

namespace toml_detail {

std::string canonical_of(const toml::node& node, bool as_float) {
  if (auto v = node.as_integer())
    return as_float ? shortest_double(static_cast<double>(v->get())) : std::to_string(v->get());
  if (auto v = node.as_floating_point()) return shortest_double(v->get());
  if (auto v = node.as_boolean()) return v->get() ? "true" : "false";
  if (auto v = node.as_string()) return quote_string(v->get());
  if (auto arr = node.as_array()) {
    std::string out = "[";
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string item = canonical_of(*arr->get(i), as_float);
      if (item.empty()) return "";
      out += (i ? ", " : "") + item;
    }
    return out + "]";
  }
  return "";
}

void flatten(const toml::table& table, const std::string& prefix,
             std::vector<std::pair<std::string, const toml::node*>>& out) {
  for (const auto& [k, node] : table) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* t = node.as_table()) {
      flatten(*t, key, out);
    } else {
      out.emplace_back(key, &node);
    }
  }
}

bool is_float_key(const std::string& key) { return float_keys().count(key) > 0; }

// The keys whose values are file or folder paths (data.store, model.pretrained, ...).
bool is_path_key(const std::string& key) {
  static const std::set<std::string> keys = [] {
    std::set<std::string> out;
    for (const KeyInfo& info : config_key_infos())
      if (info.type == "path") out.insert(info.key);
    return out;
  }();
  return keys.count(key) > 0;
}

// A path written two ways names one file: "stores/./train/" is "stores/train".
std::string canonical_path(const std::string& canonical) {
  try {
    const toml::table parsed = toml::parse("v = " + canonical);
    const auto text = parsed.get("v") ? parsed.get("v")->value<std::string>() : std::nullopt;
    if (!text || text->empty()) return canonical;
    std::string path = std::filesystem::path(*text).lexically_normal().string();
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    return quote_string(path);
  } catch (const toml::parse_error&) {
    return canonical;
  }
}

}  // namespace toml_detail

bool is_text_key(const std::string& key) {
  static const std::set<std::string> keys = [] {
    std::set<std::string> out;
    for (const KeyInfo& info : config_key_infos())
      if (info.type == "string" || info.type == "path") out.insert(info.key);
    return out;
  }();
  return keys.count(key) > 0;
}

std::string canonical_value(const std::string& text, bool text_key) {
  const toml::table parsed = command_line_value(text, text_key);  // read as a config override reads it
  std::string out = canonical_of(*parsed.get("v"));
  if (out.empty()) throw ConfigError("value '" + text + "' is not a number, boolean, string or array");
  return out;
}

std::string canonical_for_key(const std::string& key, const std::string& canonical) {
  if (toml_detail::is_path_key(key)) return toml_detail::canonical_path(canonical);
  if (!is_float_key(key) || canonical.find_first_of("0123456789") == std::string::npos) return canonical;
  try {
    const toml::table parsed = toml::parse("v = " + canonical);
    const std::string out = canonical_of(*parsed.get("v"), /*as_float=*/true);
    return out.empty() ? canonical : out;
  } catch (const toml::parse_error&) {
    return canonical;
  }
}

Overrides flatten_config(const std::string& toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    throw DataError(origin + ":" + std::to_string(e.source().begin.line) +
                    ": not TOML: " + std::string(e.description()));
  }
  std::vector<std::pair<std::string, const toml::node*>> flat;
  flatten(root, "", flat);
  Overrides values;
  for (const auto& [key, node] : flat) values[key] = canonical_of(*node);
  return values;
}

std::string display_value(const std::string& canonical) {
  if (canonical.size() >= 2 && canonical.front() == '"' && canonical.back() == '"') {
    try {
      toml::table t = toml::parse("v = " + canonical);
      return std::string(t.get("v")->as_string()->get());
    } catch (const toml::parse_error&) {
    }
  }
  return canonical;
}

ValueFilter parse_filter_args(const std::vector<std::string>& args, const std::string& what) {
  ValueFilter out;
  for (const auto& a : args) {
    const auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == a.size())
      throw ConfigError(what + " '" + a + "': expected key=value (e.g. model.dropout=0.1)");
    try {
      const std::string key = a.substr(0, eq);
      out[key].insert(canonical_for_key(key, canonical_value(a.substr(eq + 1), is_text_key(key))));
    } catch (const ConfigError& e) {
      throw ConfigError(what + " '" + a + "': " + e.what());
    }
  }
  return out;
}

Overrides parse_override_args(const std::vector<std::string>& args, const std::string& what) {
  Overrides out;
  for (const auto& [key, values] : parse_filter_args(args, what)) {
    if (values.size() > 1) {
      std::vector<std::string> shown;
      for (const auto& v : values) shown.push_back(display_value(v));
      throw ConfigError(what + " " + key + ": given " + std::to_string(values.size()) + " values (" +
                        join(shown, ", ") + "); it takes one");
    }
    out[key] = *values.begin();
  }
  return out;
}

bool matches(const Overrides& config, const Overrides& filter) {
  for (const auto& [key, value] : filter) {
    auto it = config.find(key);
    if (it == config.end() || it->second != value) return false;
  }
  return true;
}

bool matches(const Overrides& config, const ValueFilter& filter) {
  for (const auto& [key, values] : filter) {
    auto it = config.find(key);
    if (it == config.end() || !values.count(it->second)) return false;
  }
  return true;
}

std::string describe(const Overrides& overrides) {
  if (overrides.empty()) return "(base config)";
  std::string out;
  for (const auto& [key, value] : overrides) out += (out.empty() ? "" : ", ") + key + "=" + display_value(value);
  return out;
}

}  // namespace segrun::sweeps
