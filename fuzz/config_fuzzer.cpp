// libFuzzer target: the experiment config parser (core/config: TOML -> Config, with overrides).
// Input: TOML text, optionally followed by a line "--" and one "key=value" override per line.
// Property: a config that parses re-serializes (to_toml) to text that parses to the same TOML.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string text = input;
  std::vector<std::string> overrides;
  const size_t split = input.find("\n--\n");
  if (split != std::string::npos) {
    text = input.substr(0, split);
    size_t pos = split + 4;
    while (pos <= input.size()) {
      const size_t end = std::min(input.find('\n', pos), input.size());
      overrides.push_back(input.substr(pos, end - pos));
      pos = end + 1;
    }
  }
  segrun::Config config;
  try {
    config = segrun::parse_config(text, "fuzz.toml", overrides);
  } catch (const segrun::Error&) {
    return 0;
  }
  const std::string written = segrun::to_toml(config);
  std::string rewritten;
  try {
    rewritten = segrun::to_toml(segrun::parse_config(written, "written.toml"));
  } catch (const segrun::Error& e) {
    segrun::fuzz::fuzz_check(false, std::string("to_toml output does not parse: ") + e.what());
  }
  segrun::fuzz::fuzz_check(rewritten == written, "to_toml is not a fixed point");
  return 0;
}
