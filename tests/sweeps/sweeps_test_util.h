#pragma once
// Helpers shared by the sweeps tests: a scratch directory removed on destruction, text files,
// and fabricated run directories (overrides.json, status, result.json written by hand).

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace segrun::sweeps::testing {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag)
      : path_(std::filesystem::temp_directory_path() /
              ("segrun-sweeps-" + tag + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& name = "") const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

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
