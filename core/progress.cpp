// Progress lines and bars (core/progress.h).
#include "core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>

#include "core/error.h"
#include "core/log.h"

namespace segrun {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", static_cast<long>(s / 3600), static_cast<long>((s / 60) % 60),
                static_cast<long>(s % 60));
  return buf;
}

namespace {

// A rate with 3 significant digits, and no exponent past them (1460, not 1.46e+03).
std::string rate_number(double rate) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), rate >= 999.5 ? "%.0f" : "%.3g", rate);  // %.3g of 999.7 is 1e+03
  return buf;
}

// Items per second, minute or hour, whichever puts the number at 1 or above.
std::string rate_text(int64_t done, double seconds) {
  const double per_s = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  if (per_s >= 1.0 || per_s == 0.0) return rate_number(per_s) + "/s";
  if (per_s * 60 >= 1.0) return rate_number(per_s * 60) + "/min";
  return rate_number(per_s * 3600) + "/h";
}

}  // namespace

std::string progress_text(const std::string& what, int64_t done, int64_t total, const std::string& unit,
                          double seconds) {
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  char buf[160];
  if (total > 0) {
    const double eta = rate > 0 ? static_cast<double>(total - done) / rate : -1.0;
    std::snprintf(buf, sizeof(buf), " %ld/%ld %s (%d%%) %s eta %s", static_cast<long>(done), static_cast<long>(total),
                  unit.c_str(), static_cast<int>(100 * done / total), rate_text(done, seconds).c_str(),
                  format_duration(eta).c_str());
  } else {
    std::snprintf(buf, sizeof(buf), " %ld %s %s", static_cast<long>(done), unit.c_str(),
                  rate_text(done, seconds).c_str());
  }
  return what + buf;
}

ProgressStyle progress_style() {
  if (const char* env = std::getenv("SEGRUN_PROGRESS"); env && *env) {
    const std::string v = env;
    if (v == "terminal") return ProgressStyle::kTerminal;
    if (v == "lines") return ProgressStyle::kLines;
    if (v == "off") return ProgressStyle::kOff;
    throw ConfigError("SEGRUN_PROGRESS: \"" + v + "\" is not one of terminal, lines, off");
  }
  const bool slurm = std::getenv("SLURM_JOB_ID") != nullptr;
  return isatty(STDERR_FILENO) && !slurm ? ProgressStyle::kTerminal : ProgressStyle::kLines;
}

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void default_sink(ProgressStyle style, const std::string& text, bool final_line) {
  if (style == ProgressStyle::kTerminal) {
    std::cerr << "\r" << text << "\033[K" << (final_line ? "\n" : "") << std::flush;
  } else {
    log::info("{}", text);
  }
}

}  // namespace

Progress::Progress(std::string what, int64_t total, std::string unit, bool enabled)
    : Progress(std::move(what), total, std::move(unit), enabled ? progress_style() : ProgressStyle::kOff, 30.0,
               steady_seconds, nullptr) {}

Progress::Progress(std::string what, int64_t total, std::string unit, ProgressStyle style, double interval_s,
                   Clock clock, Sink sink)
    : what_(std::move(what)),
      unit_(std::move(unit)),
      total_(total),
      style_(style),
      interval_s_(style == ProgressStyle::kTerminal ? 0.2 : interval_s),
      clock_(clock ? std::move(clock) : Clock(steady_seconds)),
      sink_(std::move(sink)) {
  if (!sink_) sink_ = [style](const std::string& text, bool final_line) { default_sink(style, text, final_line); };
  start_ = last_shown_ = clock_();
}

Progress::~Progress() {
  try {
    // A loop left by an exception did not finish: no summary line (count, time, rate) above its
    // error; a line drawn in place is ended as it stands, so that the error starts a line.
    if (std::uncaught_exceptions() > uncaught_at_start_) {
      if (!finished_ && style_ == ProgressStyle::kTerminal && !last_text_.empty()) sink_(last_text_, true);
      finished_ = true;
      return;
    }
    finish();
  } catch (...) {  // a destructor must not throw; the final line is a courtesy
  }
}

void Progress::advance(int64_t n) {
  done_ += n;
  if (style_ == ProgressStyle::kOff || finished_) return;
  const double now = clock_();
  if (now - last_shown_ < interval_s_) return;
  last_shown_ = now;
  last_text_ = progress_text(what_, done_, total_, unit_, now - start_);
  sink_(last_text_, false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (style_ == ProgressStyle::kOff) return;
  const double seconds = clock_() - start_;
  char buf[96];
  std::snprintf(buf, sizeof(buf), " %ld %s in %s (%s)", static_cast<long>(done_), unit_.c_str(),
                format_duration(seconds).c_str(), rate_text(done_, seconds).c_str());
  sink_(what_ + buf, true);
}

}  // namespace segrun
