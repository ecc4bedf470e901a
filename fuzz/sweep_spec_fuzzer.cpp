// libFuzzer target: the sweep-spec parser and its expansion (sweeps/spec). Input: spec TOML text;
// relative paths resolve in a scratch folder holding base.toml (a small valid config), so
// `base = "base.toml"` in a seed reaches the grid/variants/filters code.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "fuzz/fuzz_util.h"
#include "sweeps/spec.h"

namespace {

std::string scratch_dir;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string name = "segrun-fuzz-sweep-" + std::to_string(getpid());
  scratch_dir = (std::filesystem::temp_directory_path() / name).string();
  std::filesystem::create_directories(scratch_dir);
  std::ofstream(scratch_dir + "/base.toml") << "[data]\nstore = \"train\"\ncrop = [64, 64]\n"
                                               "[model]\nwidth = 8\n[train]\niters = 10\n";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  segrun::sweeps::SweepSpec spec;
  try {
    spec = segrun::sweeps::parse_sweep_spec(text, "fuzz_spec.toml", scratch_dir);
  } catch (const segrun::Error&) {
    return 0;
  }
  segrun::fuzz::fuzz_check(!spec.configurations.empty(), "a parsed spec without configurations");
  try {
    const auto runs = segrun::sweeps::expand_sweep(spec);
    segrun::fuzz::fuzz_check(runs.size() == spec.configurations.size() * spec.seeds.size(),
                             "expand_sweep run count != configurations x seeds");
    for (const auto& run : runs) segrun::fuzz::fuzz_check(run.id.size() == 10, "run id is not 10 hex digits");
  } catch (const segrun::Error&) {
  }
  return 0;
}
