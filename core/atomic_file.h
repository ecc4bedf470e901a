#pragma once
// Crash-safe file writes: content goes to "<path>.tmp-<pid>" in the same directory, is fsynced,
// then renamed over `path`, and the directory is fsynced. A reader therefore sees either the old
// file or the complete new one, never a prefix. On any failure (disk full, permissions) the temp
// file is removed, the old file is untouched, and IoError names the path and the OS error.

#include <string>
#include <string_view>

namespace segrun {

void write_file_atomic(const std::string& path, std::string_view content);
// Appends one line (a '\n' is added) and flushes it to the OS; for metrics.jsonl-style logs.
// IoError with the OS's reason ("No space left on device") when it cannot, the file then as it was.
void append_line(const std::string& path, std::string_view line);
// Reads a whole file; IoError naming the path if it cannot.
std::string read_file(const std::string& path);
// Whether something is at `path`; false, not an exception, when that cannot be checked either.
bool path_exists(const std::string& path);
// "<dir>/<name>.tmp-<pid>": a temp name beside the final one (same filesystem for rename).
std::string temp_path_for(const std::string& final_path);

}  // namespace segrun
