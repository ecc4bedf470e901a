#pragma once
// How a TOML value's type is named in one-line errors ("expected an integer, got a string"),
// shared by the config parser (core/config.cpp) and the sweep-spec parser (sweeps/spec.cpp) so
// both say it the same way.

#include <toml++/toml.h>

#include <string>

namespace segrun {

inline std::string toml_type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

}  // namespace segrun
