#pragma once
// Progress of a long loop (packing records, evaluating images, preparing a sweep's runs), for the
// person waiting on it. Two ways to show it, chosen once per process:
//   terminal  stderr is a TTY and the process is not a Slurm job: one line redrawn in place,
//             at most 5 times a second, "<what> 120/500 records (24%) 35.2/s eta 0:00:11";
//   lines     otherwise (a log file, a Slurm job's output, a pipe): the same text as a log line
//             every `interval_s` seconds, so a log shows that the job is alive and how fast it goes.
// Both end with one final line (count, elapsed time, mean rate), unless an exception leaves the
// loop (the terminal's line then stays as last drawn). SEGRUN_PROGRESS=terminal|lines|off
// overrides the choice. A disabled Progress (the ranks other than 0) prints nothing.
// Not thread-safe: one loop advances it.

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>

namespace segrun {

// "H:MM:SS" ("?" for a negative or non-finite value).
std::string format_duration(double seconds);

// "<what> <done>/<total> <unit> (<pct>%) <rate> eta <H:MM:SS>" (total <= 0: no total, no eta); the
// rate per second, minute or hour, whichever is at least 1 ("30/s", "6/min").
std::string progress_text(const std::string& what, int64_t done, int64_t total, const std::string& unit,
                          double seconds);

enum class ProgressStyle { kTerminal, kLines, kOff };

// The style for this process: SEGRUN_PROGRESS when set (ConfigError on another value), else
// terminal when stderr is a TTY and SLURM_JOB_ID is unset, else lines.
ProgressStyle progress_style();

class Progress {
 public:
  using Clock = std::function<double()>;  // seconds, monotonic; tests pass their own (null: steady)
  // sink receives every line (terminal: the text to draw after "\r"; lines: a log line); the
  // default draws on stderr or logs at info.
  using Sink = std::function<void(const std::string& text, bool final_line)>;

  Progress(std::string what, int64_t total, std::string unit, bool enabled = true);
  Progress(std::string what, int64_t total, std::string unit, ProgressStyle style, double interval_s, Clock clock,
           Sink sink);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1);
  // The final line (once; the destructor calls it).
  void finish();

 private:
  std::string what_, unit_;
  int64_t total_ = 0, done_ = 0;
  ProgressStyle style_ = ProgressStyle::kOff;
  double interval_s_ = 30.0;
  Clock clock_;
  Sink sink_;
  double start_ = 0, last_shown_ = 0;
  bool finished_ = false;
  std::string last_text_;                                     // the last line advance() showed
  const int uncaught_at_start_ = std::uncaught_exceptions();  // see ~Progress
};

}  // namespace segrun
