#pragma once
// Where a command will write, checked before it writes anything, so that nothing a user has is
// overwritten and a long command does not fail at its end: each check throws ConfigError naming
// the option and the path.

#include <string>

namespace segrun {

// `path` does not exist, or is an empty folder. `purpose` ends the message, e.g. "predictions go
// to a new or empty folder".
void require_new_or_empty_folder(const std::string& option, const std::string& path, const std::string& purpose);

// `path` does not exist and its folder does (the file is written at the end).
void require_new_file(const std::string& option, const std::string& path);

}  // namespace segrun
