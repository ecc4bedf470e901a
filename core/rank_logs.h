#pragma once
// What the ranks of a run wrote to their log files (<run>/logs/rank-<r>.log, whose line layout
// core/log.cpp sets: "2026-12-06 10:13:31.123 error r1/2 <message>"), read by the process that
// launched them: where a launch starts in each file, the first error logged after that, the world
// the run last ran in and the world that wrote its latest checkpoint.
// Pure file reads; thread-compatible.

#include <cstdint>
#include <map>
#include <string>

namespace segrun::log {

// Each file's size in `log_dir` (path -> bytes): what a launch adds starts there.
std::map<std::string, uintmax_t> log_sizes(const std::string& log_dir);

// The earliest error line (by its time stamp) the ranks added since `before`: "rank 1: <message>
// (<its log>)"; "" when none did (a rank killed outright writes nothing).
std::string first_error_since(const std::string& log_dir, const std::map<std::string, uintmax_t>& before);

// The world size rank 0 last logged ("r0/<world size>" on rank-0.log's last line that has one),
// else the highest rank-<r>.log + 1 (the files are appended to: an attempt on more ranks leaves
// its own), else 1.
int last_world_size(const std::string& log_dir);

// The world size of the ranks that wrote the run's latest checkpoint: the "r0/<world size>" of
// rank-0.log's last "checkpoint <path>" line (engine/trainer.cpp logs it as it saves one); 0 when
// there is none. Ask it of a run that has checkpoints: a resume must run on that many ranks (the
// global batch), whatever a failed attempt on another world size logged after them.
int checkpoint_world_size(const std::string& log_dir);

}  // namespace segrun::log
