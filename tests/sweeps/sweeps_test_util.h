#pragma once
// Helpers shared by the sweeps tests: the scratch directory (tests/scratch_dir.h), text files,
// and fabricated run directories (overrides.json, status, result.json written by hand).

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "tests/scratch_dir.h"

namespace segrun::sweeps::testing {

using segrun::testing::ScratchDir;

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path);
  out << text;
}

// A finished (or not) run: overrides are key -> canonical TOML text, e.g. {"model.dropout", "0.1"}.
inline void fabricate_run(const std::filesystem::path& dir, const std::map<std::string, std::string>& overrides,
                          int seed, const std::string& status, double miou,
                          const std::map<std::string, double>& per_class = {}) {
  std::string o;
  for (const auto& [k, v] : overrides) {
    std::string escaped;
    for (char c : v) escaped += c == '"' ? std::string("\\\"") : std::string(1, c);
    o += (o.empty() ? "" : ", ") + std::string("\"") + k + "\": \"" + escaped + "\"";
  }
  write_text(dir / "overrides.json", "{\"sweep\": \"t\", \"id\": \"" + dir.filename().string() +
                                         "\", \"seed\": " + std::to_string(seed) + ", \"overrides\": {" + o + "}}\n");
  write_text(dir / "status", status + "\n");
  if (status == "done") {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", miou);
    std::string pc;
    for (const auto& [name, v] : per_class) {
      char b[64];
      std::snprintf(b, sizeof(b), "%.17g", v);
      pc += (pc.empty() ? "" : ", ") + std::string("\"") + name + "\": " + b;
    }
    write_text(dir / "result.json", std::string("{\"aAcc\": 80.0, \"mIoU\": ") + buf +
                                        ", \"mAcc\": 50.0, \"per_class\": {" + pc + "}, \"iterations\": 40}\n");
  }
}

}  // namespace segrun::sweeps::testing
