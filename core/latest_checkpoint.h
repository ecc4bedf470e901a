#pragma once
// The `latest` file of a run's checkpoints/ folder: one line naming the folder's newest
// iter_<n>.pt (engine/checkpoint.h's save_checkpoint writes it; mmseg's `last_checkpoint` is the
// same idea). Users pass it where a checkpoint is asked for (`--resume run/checkpoints/latest`,
// `eval --checkpoint .../latest`), so those options read it as the checkpoint it names.
// Pure functions of the file system; thread-safe.

#include <string>

namespace segrun {

inline constexpr const char* kLatestCheckpointFile = "latest";

// `path` when it is not a `latest` file (any other word, "" included, passes as it is); else the
// checkpoint it names, in the same folder.
// ConfigError naming `option` when that checkpoint is gone or the file names none.
std::string resolved_checkpoint_path(const std::string& option, const std::string& path);

}  // namespace segrun
