#pragma once
// Where a command will write, checked before it writes anything, so that nothing a user has is
// overwritten and a long command does not fail at its end: each check throws ConfigError naming
// the option and the path.

#include <filesystem>
#include <string>

namespace segrun {

// `path` as the file system will resolve it once its missing folders are made: "new/.." is the
// current folder even while "new" does not exist (when a check of "new/.." itself finds nothing
// there). Absolute, symbolic links of its existing part followed; `path` itself when the file
// system cannot say. The checks below look there.
std::filesystem::path resolved_output_path(const std::string& path);

// The store folder a data.store / data.val_store value names, resolved as above: "st/val",
// "st/val/", "./st/val", "st/val/manifest.json" and a link to it are one folder.
std::filesystem::path resolved_store_folder(const std::string& store);

// `path` does not exist, or is an empty folder. `purpose` ends the message, e.g. "predictions go
// to a new or empty folder".
void require_new_or_empty_folder(const std::string& option, const std::string& path, const std::string& purpose);

// `dir` (a run folder to train in, or to queue a job in) does not exist, is empty, or is a segrun
// run folder (RunFolder::holds_run_files): a folder segrun has trained in, a sweep or a submit has
// prepared, or another rank of this run has just created. A folder of the user's own files is
// refused, naming `option`.
void require_new_empty_or_run_folder(const std::string& option, const std::string& dir);

// ConfigError "<option> <path>: a symbolic link to <target>, which does not exist; ..." when
// `path` is such a link: a folder cannot be made there, and a file written there replaces the link.
void refuse_dangling_link(const std::string& option, const std::string& path);

// `path` does not exist and its folder does (the file is written at the end).
void require_new_file(const std::string& option, const std::string& path);

}  // namespace segrun
