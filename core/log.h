#pragma once
// Logging for every rank, through spdlog. init_logging() installs the process's default logger:
// a file sink at <dir>/rank-<r>.log for every rank (when dir is set) and, on rank 0 only, a
// colored terminal sink. Lines carry time, level and "r<rank>/<world>". Rank 0 logs at `level`,
// other ranks at warn unless `all_ranks_verbose`. Use the SEGRUN_LOG_* style functions below
// (thin wrappers over spdlog's default logger, so they are thread-safe).

#include <spdlog/spdlog.h>

#include <string>

namespace segrun::log {

struct LogOptions {
  int rank = 0;
  int world = 1;
  std::string dir;               // empty: no file sink
  std::string level = "info";    // trace|debug|info|warn|error
  bool all_ranks_verbose = false;
  bool console = true;           // rank 0 prints to the terminal
};

// Safe to call more than once (e.g. once early without a directory, again when the run
// directory is known); later calls replace the sinks.
void init_logging(const LogOptions& options);
void flush();

template <typename... Args>
void info(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::info(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::warn(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void error(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::error(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::debug(fmt, std::forward<Args>(args)...);
}

}  // namespace segrun::log
