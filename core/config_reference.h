#pragma once
// The config key reference: every key of the schema (config_key_infos(), core/config.h) with its
// type, default, range or choices and one line of help, grouped by TOML table ([data], [model],
// [model.vit], ...), as an aligned text table (`segrun config --keys [PREFIX]`) or as markdown
// (`--format md`). docs/config.md is config_reference_page(), checked by tests/core.
// Pure functions, thread-safe.

#include <string>
#include <vector>

#include "core/config.h"

namespace segrun {

enum class ReferenceFormat { kText, kMarkdown };

// The keys whose dotted name starts with `prefix` ("" = all; "model.mta" = model.mta_clip.*), in
// schema order. ConfigError when none does, with the nearest key or table when one is close.
std::vector<KeyInfo> keys_with_prefix(const std::string& prefix);

// `keys` as tables, one per TOML table in the order the keys come: a text table aligned across
// the tables, or a markdown section per table.
std::string format_key_reference(const std::vector<KeyInfo>& keys, ReferenceFormat format);

// The whole of docs/config.md: a title, how keys are set, and the markdown tables of every key.
std::string config_reference_page();

}  // namespace segrun
