#pragma once
// How a value written on a command line (`key=value`: a config override, a table's --where or
// --baseline) reads, one rule for all of them: as TOML (0.1, 2e-4, "bn", [1, 2], true), else as a
// plain decimal that TOML refuses but Python and C read (.5, 5., -.5e-3), else as a bare word (a
// string: model.head=fpn). The value is the table's "v". Of a string key (`text_key`: name,
// data.store, ...) a number, boolean or date is its text, as the key can hold nothing else
// (name=1, name=2026-01-01, name=1. are the names "1", "2026-01-01", "1.").

#include <toml++/toml.h>

#include <cstdlib>
#include <regex>
#include <string>

namespace segrun {

inline toml::table command_line_value(const std::string& text, bool text_key = false) {
  try {
    toml::table parsed = toml::parse("v = " + text);
    const toml::node& v = *parsed.get("v");
    if (!text_key || v.is_string() || !v.is_value()) return parsed;
  } catch (const toml::parse_error&) {
  }
  static const std::regex kPlainDecimal(R"([+-]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)");
  toml::table value;
  if (!text_key && std::regex_match(text, kPlainDecimal))
    value.insert("v", std::strtod(text.c_str(), nullptr));
  else
    value.insert("v", text);
  return value;
}

}  // namespace segrun
