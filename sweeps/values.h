#pragma once
// Config values as sweeps, tables and filters compare them: canonical TOML text (integers plain,
// floats in their shortest round-trip form with a '.' or exponent, strings quoted, arrays
// element by element; a float key's integers as floats), so `0.1`, `1e-1` and `0.10` are one
// value, and `0` and `0.0` of model.dropout too. Overrides map dotted config keys to such text.
// Errors name the argument or file they come from. Pure functions; thread-safe.

#include <map>
#include <set>
#include <string>
#include <vector>

namespace segrun::sweeps {

// Dotted config key -> canonical TOML value text, sorted by key.
using Overrides = std::map<std::string, std::string>;

// "key=value" strings (value in TOML syntax, bare words are strings) to canonical overrides;
// ConfigError naming the bad argument, or a key given twice with two values. what names the
// option in messages ("--baseline").
Overrides parse_override_args(const std::vector<std::string>& args, const std::string& what);
// Canonical TOML text of one value written on a command line (core/command_line_value.h: TOML,
// decimals such as .5, bare words are strings; of a string key, `text_key`, a number is its text).
std::string canonical_value(const std::string& toml_value_text, bool text_key = false);
// Whether a config key holds a string or a path (name, model.head, data.store): its values written
// on a command line are text (name=1 is "1"), as config overrides read them.
bool is_text_key(const std::string& key);
// canonical rewritten for the config key it is a value of: for a float key (model.dropout,
// train.lr, a list of floats) integers become floats, so 0 and 0.0 are one value; for a path key
// (data.store, model.pretrained) the path is lexically normal without a trailing '/', so that
// "/x/train/" and "/x/train" are one value (and one run).
std::string canonical_for_key(const std::string& key, const std::string& canonical);
// Every value of a resolved config (a run folder's config.toml text) as dotted key -> canonical
// value, tables flattened ("train.lr"). DataError "<origin>:<line>: ..." when it is not TOML.
Overrides flatten_config(const std::string& toml_text, const std::string& origin);
// A canonical value for people: strings without their quotes.
std::string display_value(const std::string& canonical);
// True when every key of filter is in config with the same value.
bool matches(const Overrides& config, const Overrides& filter);

// Accepted values per key (`segrun table --where k=a --where k=b`): a configuration passes when
// each key's value is one of its set.
using ValueFilter = std::map<std::string, std::set<std::string>>;
// As parse_override_args, a key given again adding a value instead of replacing it.
ValueFilter parse_filter_args(const std::vector<std::string>& args, const std::string& what);
bool matches(const Overrides& config, const ValueFilter& filter);
// "k=v, k2=v2" with display values ("(base config)" when empty).
std::string describe(const Overrides& overrides);

}  // namespace segrun::sweeps
