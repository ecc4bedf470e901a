#pragma once
// The files of a folder as a dataset scan sees them (`data pack`, `predict --images`, `metrics`),
// after mmcv's scandir, which mmsegmentation's datasets use: a folder reached through a symbolic
// link is entered like any other (a split whose city folders link to shared storage), each real
// folder once (a link loop ends; a folder reached under two names is listed under the first in
// sorted order); a file whose name starts with '.' is skipped (macOS's ._X resource forks that a
// tar made on a Mac leaves, .DS_Store). Unlike scandir, a folder whose name starts with '.' is
// skipped too: .git, or .ipynb_checkpoints with copies of the images, is not the dataset's.
// Pure file-system reads; thread-compatible.

#include <filesystem>
#include <vector>

namespace segrun {

// The regular files (or links to them) in `dir`, and in its subfolders when `recursive`, sorted
// by path. IoError naming a folder that cannot be listed.
std::vector<std::filesystem::path> files_in(const std::filesystem::path& dir, bool recursive);

}  // namespace segrun
