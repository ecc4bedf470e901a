#include "core/log.h"

#include <spdlog/spdlog.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <filesystem>
#include <vector>

namespace segrun::log {

void init_logging(const LogOptions& options) {
  std::vector<spdlog::sink_ptr> sinks;
  auto level = spdlog::level::from_str(options.level);
  if (options.console && options.rank == 0) {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_level(level);
    sinks.push_back(console);
  }
  if (!options.dir.empty()) {
    std::filesystem::create_directories(options.dir);
    auto path = options.dir + "/rank-" + std::to_string(options.rank) + ".log";
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
    // Files keep info even on non-zero ranks: they are where a failed rank's story is read.
    file->set_level(std::min(spdlog::level::from_str(options.level), spdlog::level::info));
    sinks.push_back(file);
  }
  auto logger = std::make_shared<spdlog::logger>("segrun", sinks.begin(), sinks.end());
  // core/rank_logs.cpp reads this layout back (the launcher's "rank 1: <error>").
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ r" + std::to_string(options.rank) + "/" +
                      std::to_string(options.world) + " %v");
  logger->set_level(spdlog::level::trace);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void write(Level level, const std::string& message) {
  switch (level) {
    case Level::kDebug: spdlog::debug("{}", message); break;
    case Level::kInfo: spdlog::info("{}", message); break;
    case Level::kWarn: spdlog::warn("{}", message); break;
    case Level::kError: spdlog::error("{}", message); break;
  }
}

void write_to_file(Level level, const std::string& message) {
  const auto logger = spdlog::default_logger();
  if (!logger) return;
  const spdlog::level::level_enum levels[] = {spdlog::level::debug, spdlog::level::info, spdlog::level::warn,
                                              spdlog::level::err};
  const spdlog::level::level_enum spd_level = levels[static_cast<int>(level)];
  const spdlog::details::log_msg line(logger->name(), spd_level, message);
  for (const auto& sink : logger->sinks()) {
    if (!std::dynamic_pointer_cast<spdlog::sinks::basic_file_sink_mt>(sink) || !sink->should_log(spd_level)) continue;
    sink->log(line);
    sink->flush();
  }
}

void flush() {
  if (auto logger = spdlog::default_logger()) logger->flush();
}

}  // namespace segrun::log
