#pragma once
// Which dataset a folder holds as the dataset releases it, told by its top folders: ADE20K's
// [ADEChallengeData2016/]images/ and annotations/, Cityscapes' leftImg8bit/ and gtFine/. For the
// messages of a folder given in the wrong place: a raw dataset given as a store (store.cpp), a
// root packed under the other --layout (pack.cpp).
// Pure file-system checks; thread-safe.

#include <filesystem>
#include <optional>
#include <system_error>

#include "core/kinds.h"

namespace segrun::data {

// The layout whose release folders `root` holds; nullopt for neither (or, oddly, both).
inline std::optional<DatasetLayout> released_layout_of(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto holds = [&](const fs::path& dir, const char* a, const char* b) {
    return fs::is_directory(dir / a, ec) && fs::is_directory(dir / b, ec);
  };
  const bool ade =
      holds(root, "images", "annotations") || holds(root / "ADEChallengeData2016", "images", "annotations");
  const bool cityscapes = holds(root, "leftImg8bit", "gtFine");
  if (ade == cityscapes) return std::nullopt;
  return ade ? DatasetLayout::kAde20k : DatasetLayout::kCityscapes;
}

}  // namespace segrun::data
