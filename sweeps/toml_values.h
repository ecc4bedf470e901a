#pragma once
// The toml++ side of sweeps/values.h, private to sweeps/ (hence toml_detail): canonical text of
// a parsed TOML node and the flattening of nested tables into dotted keys, shared by the value
// functions and the spec parser so both write a value the same way.

#include <toml++/toml.h>

#include <string>
#include <utility>
#include <vector>

namespace segrun::sweeps::toml_detail {

// Canonical text of a TOML value; empty for unsupported types (tables, dates). With as_float (a
// value of a float key, is_float_key) integers are written as floats: 0 is 0.0.
std::string canonical_of(const toml::node& node, bool as_float = false);
// Flattens nested tables ("model.dropout" quoted or dotted) into dotted key -> node.
void flatten(const toml::table& table, const std::string& prefix,
             std::vector<std::pair<std::string, const toml::node*>>& out);
// Whether the config key's values are floats or lists of floats (model.dropout, train.lr,
// data.ratio): the schema's resolved defaults say which (every float list has a non-empty default).
bool is_float_key(const std::string& key);

}  // namespace segrun::sweeps::toml_detail
