#pragma once
// Logging for every rank. init_logging() installs the process's logger (spdlog, inside
// core/log.cpp only): a file sink at <dir>/rank-<r>.log for every rank (when dir is set) and, on
// rank 0 only, a colored terminal sink. Lines carry time, level and "r<rank>/<world>". The
// terminal logs at `level`; every rank's file at `level` or info, whichever is more verbose (a
// failed rank's story is read there). The functions below take a
// brace pattern (core/format.h) and are thread-safe.
// This header includes neither spdlog nor fmt, so translation units that include LibTorch 2.x
// (which ships its own fmt headers) can log; see core/format.h.

#include <string>
#include <string_view>

#include "core/format.h"

namespace segrun::log {

enum class Level { kDebug, kInfo, kWarn, kError };

struct LogOptions {
  int rank = 0;
  int world = 1;
  std::string dir;             // empty: no file sink
  std::string level = "info";  // trace|debug|info|warn|error
  bool console = true;         // rank 0 prints to the terminal
};

// Safe to call more than once (e.g. once early without a directory, again when the run
// directory is known); later calls replace the sinks.
void init_logging(const LogOptions& options);
void flush();
// Writes one finished line at `level`.
void write(Level level, const std::string& message);
// The same, to the rank's log file only: for what the process prints on the terminal itself
// (its last error line), so that the file keeps it too.
void write_to_file(Level level, const std::string& message);

template <typename... Args>
void info(std::string_view pattern, const Args&... args) {
  write(Level::kInfo, format(pattern, args...));
}
template <typename... Args>
void warn(std::string_view pattern, const Args&... args) {
  write(Level::kWarn, format(pattern, args...));
}
template <typename... Args>
void error(std::string_view pattern, const Args&... args) {
  write(Level::kError, format(pattern, args...));
}
template <typename... Args>
void debug(std::string_view pattern, const Args&... args) {
  write(Level::kDebug, format(pattern, args...));
}

}  // namespace segrun::log
