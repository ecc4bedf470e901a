#pragma once
// How a value written on a command line (`key=value`: a config override, a table's --where or
// --baseline) reads, one rule for all of them: as TOML (0.1, 2e-4, "bn", [1, 2], true), else as a
// plain decimal that TOML refuses but Python and C read (.5, 5., -.5e-3), else as a bare word (a
// string: model.head=fpn). The value is the table's "v".

#include <toml++/toml.h>

#include <cstdlib>
#include <regex>
#include <string>

namespace segrun {

inline toml::table command_line_value(const std::string& text) {
  try {
    return toml::parse("v = " + text);
  } catch (const toml::parse_error&) {
  }
  static const std::regex kPlainDecimal(R"([+-]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)");
  toml::table value;
  if (std::regex_match(text, kPlainDecimal))
    value.insert("v", std::strtod(text.c_str(), nullptr));
  else
    value.insert("v", text);
  return value;
}

}  // namespace segrun
