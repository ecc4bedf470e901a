#include "data/classes.h"

#include "core/error.h"

namespace segrun::data {
namespace {

// The class lists stay packed as in the papers' code.
// clang-format off
const std::vector<std::string> kAdeClasses = {
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag"};

const std::vector<std::string> kCityscapesClasses = {
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle"};
// clang-format on

std::array<int, 256> make_ade_lut() {
  std::array<int, 256> lut{};
  lut.fill(kInvalidLabel);
  lut[0] = kIgnoreIndex;
  for (int k = 1; k <= 150; ++k) lut[k] = k - 1;
  lut[255] = kIgnoreIndex;
  return lut;
}

std::array<int, 256> make_cityscapes_lut() {
  std::array<int, 256> lut{};
  lut.fill(kIgnoreIndex);
  const int label_ids[19] = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33};
  for (int train_id = 0; train_id < 19; ++train_id) lut[label_ids[train_id]] = train_id;
  return lut;
}

const std::array<int, 256> kAdeLut = make_ade_lut();
const std::array<int, 256> kCityscapesLut = make_cityscapes_lut();

}  // namespace

Layout parse_layout(const std::string& name) {
  if (name == "ade20k") return Layout::kAde20k;
  if (name == "cityscapes") return Layout::kCityscapes;
  SEGRUN_THROW(DataError, "unknown dataset layout '" << name << "' (valid: ade20k, cityscapes)");
}

std::string layout_name(Layout layout) { return layout == Layout::kAde20k ? "ade20k" : "cityscapes"; }

const std::vector<std::string>& class_names(Layout layout) {
  return layout == Layout::kAde20k ? kAdeClasses : kCityscapesClasses;
}

int num_classes(Layout layout) { return static_cast<int>(class_names(layout).size()); }

const std::array<int, 256>& label_lut(Layout layout) { return layout == Layout::kAde20k ? kAdeLut : kCityscapesLut; }

std::string mapping_name(Layout layout) {
  return layout == Layout::kAde20k ? "ade20k_reduce_zero_label" : "cityscapes_labelid_to_trainid";
}

int max_raw_label(Layout layout) { return layout == Layout::kAde20k ? 150 : 255; }

}  // namespace segrun::data
