#pragma once
// Dataset layouts known to segrun (data.layout; core/kinds.h holds the one list of their names)
// and everything particular to one as data: layout_info() is the one table of per-layout facts,
// class names (in train-id order), the mapping from the raw annotation values on disk to train
// ids, the palette, the split folder names. It is a switch over Layout, so a layout added to
// core/kinds.h does not compile until it has its facts here; the code that truly differs per
// layout (scanning a raw folder in pack.cpp, writing one in synth.cpp) switches over Layout too.
// The mappings follow mmsegmentation:
//   ADE20K      reduce_zero_label: 0 ("other") -> 255, k -> k-1 for k = 1..150, 255 stays 255;
//               values 151..254 are not ADE20K labels (label_lut marks them kInvalidLabel).
//   Cityscapes  labelIds -> trainIds (cityscapesScripts labels.py): 19 classes, the other ids
//               (0..6, 9, 10, 14..16, 18, 29, 30) and 255 -> 255; values 34..254 are no label
//               ids (kInvalidLabel: a train-id or colour PNG under a labelIds name).
// Pure functions and constant tables; thread-safe.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/kinds.h"

namespace segrun::data {

using Layout = DatasetLayout;  // Layout::kAde20k, Layout::kCityscapes
using Rgb = std::array<uint8_t, 3>;

constexpr int kIgnoreIndex = 255;
// Marker in a label LUT for raw values that the layout does not define (not a valid train id).
constexpr int kInvalidLabel = -1;

struct LayoutInfo {
  std::string name;                      // data.layout, a store's dataset: "ade20k" | "cityscapes"
  std::vector<std::string> class_names;  // train-id order (ADE20K: 150, "bed" without mmseg's trailing space)
  // Raw on-disk label value (0..255) -> train id (0..K-1), kIgnoreIndex, or kInvalidLabel.
  std::array<int, 256> label_lut;
  // Name of the mapping applied ("ade20k_reduce_zero_label", "cityscapes_labelid_to_trainid").
  std::string mapping_name;
  // Highest raw value the annotations may contain besides 255 (ignore): 150 for ADE20K, 33 for
  // Cityscapes.
  int max_raw_label;
  std::vector<Rgb> palette;  // one colour per class, as the dataset publishes them (palette.h)
  // The dataset's own names of its training and validation folders (ADE20K: training /
  // validation; Cityscapes: train / val); pack takes either dataset's split names for both.
  std::string train_folder, val_folder;
  int synth_classes;                    // classes a synthetic dataset draws by default (synth.h)
  std::vector<int> synth_other_labels;  // raw "other" values synth draws as unlabelled regions
};
const LayoutInfo& layout_info(Layout layout);

// A layout by name; DataError listing the valid names otherwise.
Layout parse_layout(const std::string& name);

// Shorthands for layout_info(layout)'s fields.
inline const std::string& layout_name(Layout layout) { return layout_info(layout).name; }
inline const std::vector<std::string>& class_names(Layout layout) { return layout_info(layout).class_names; }
inline int num_classes(Layout layout) { return static_cast<int>(class_names(layout).size()); }
inline const std::array<int, 256>& label_lut(Layout layout) { return layout_info(layout).label_lut; }
inline const std::string& mapping_name(Layout layout) { return layout_info(layout).mapping_name; }
inline int max_raw_label(Layout layout) { return layout_info(layout).max_raw_label; }

// Train id -> the dataset's own label value, the inverse of label_lut (Cityscapes' label id,
// ADE20K's 1-based class index): what `predict --label-ids` writes; 0 for values that are no
// train id.
std::array<uint8_t, 256> raw_label_of_train_id(Layout layout);

}  // namespace segrun::data
