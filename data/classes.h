#pragma once
// Dataset layouts known to segrun: their class names (in train-id order) and the mapping from the
// raw annotation values on disk to train ids, following mmsegmentation:
//   ADE20K      reduce_zero_label: 0 ("other") -> 255, k -> k-1 for k = 1..150, 255 stays 255;
//               values 151..254 are not ADE20K labels (label_lut marks them kInvalidLabel).
//   Cityscapes  labelIds -> trainIds (cityscapesScripts labels.py): 19 classes, every other id
//               (0..6, 9, 10, 14..16, 18, 29, 30, 34..255) -> 255.
// Pure functions and constant tables; thread-safe.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace segrun::data {

enum class Layout { kAde20k, kCityscapes };

constexpr int kIgnoreIndex = 255;
// Marker in a label LUT for raw values that the layout does not define (not a valid train id).
constexpr int kInvalidLabel = -1;

// "ade20k" | "cityscapes"; DataError listing the valid names otherwise.
Layout parse_layout(const std::string& name);
std::string layout_name(Layout layout);
// Class names in train-id order (ADE20K: 150, index 7 is "bed" without mmseg's trailing space).
const std::vector<std::string>& class_names(Layout layout);
int num_classes(Layout layout);
// Raw on-disk label value (0..255) -> train id (0..K-1), kIgnoreIndex, or kInvalidLabel.
const std::array<int, 256>& label_lut(Layout layout);
// Human-readable name of the mapping applied ("ade20k_reduce_zero_label", "cityscapes_labelid_to_trainid").
std::string mapping_name(Layout layout);
// Highest raw value the layout's annotations may contain (150 for ADE20K, 255 for Cityscapes,
// whose unknown ids all map to ignore).
int max_raw_label(Layout layout);

}  // namespace segrun::data
