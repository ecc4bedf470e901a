#pragma once
// What the benchmark programs share on the command line: `--name value` pairs over a table of
// defaults (an unknown name or a missing value is "<program>: unknown flag ..." and exit 2), and
// logging at warn so that their stdout holds only the tables bench/run.sh writes into
// docs/performance.md.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "core/log.h"

namespace segrun::bench {

inline std::map<std::string, std::string> parse_flags(const char* program, int argc, char** argv,
                                                      std::map<std::string, std::string> flags) {
  for (int i = 1; i < argc; i += 2) {
    const std::string key = argv[i];
    if (i + 1 >= argc || key.rfind("--", 0) != 0 || !flags.count(key.substr(2))) {
      std::fprintf(stderr, "%s: unknown flag %s (or no value)\n", program, argv[i]);
      std::exit(2);
    }
    flags[key.substr(2)] = argv[i + 1];
  }
  return flags;
}

// Progress lines (pack's "wrote shard ...") off: warnings and errors only.
inline void log_warnings_only() {
  log::LogOptions options;
  options.level = "warn";
  log::init_logging(options);
}

}  // namespace segrun::bench
