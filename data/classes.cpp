// The one table of per-layout facts: see classes.h.
#include "data/classes.h"

#include <iterator>

#include "core/error.h"

namespace segrun::data {
namespace {

// Constant-initialized arrays (no static initialization order to get wrong); the class lists
// stay packed as in the papers' code.
// clang-format off
const char* const kAdeClasses[] = {
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

const char* const kCityscapesClasses[] = {
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle"};
// clang-format on

// The palettes as the datasets publish them (train-id order).
// clang-format off
constexpr Rgb kAdePalette[] = {
    {120, 120, 120}, {180, 120, 120}, {6, 230, 230}, {80, 50, 50}, {4, 200, 3}, {120, 120, 80},
    {140, 140, 140}, {204, 5, 255}, {230, 230, 230}, {4, 250, 7}, {224, 5, 255}, {235, 255, 7},
    {150, 5, 61}, {120, 120, 70}, {8, 255, 51}, {255, 6, 82}, {143, 255, 140}, {204, 255, 4},
    {255, 51, 7}, {204, 70, 3}, {0, 102, 200}, {61, 230, 250}, {255, 6, 51}, {11, 102, 255},
    {255, 7, 71}, {255, 9, 224}, {9, 7, 230}, {220, 220, 220}, {255, 9, 92}, {112, 9, 255},
    {8, 255, 214}, {7, 255, 224}, {255, 184, 6}, {10, 255, 71}, {255, 41, 10}, {7, 255, 255},
    {224, 255, 8}, {102, 8, 255}, {255, 61, 6}, {255, 194, 7}, {255, 122, 8}, {0, 255, 20},
    {255, 8, 41}, {255, 5, 153}, {6, 51, 255}, {235, 12, 255}, {160, 150, 20}, {0, 163, 255},
    {140, 140, 140}, {250, 10, 15}, {20, 255, 0}, {31, 255, 0}, {255, 31, 0}, {255, 224, 0},
    {153, 255, 0}, {0, 0, 255}, {255, 71, 0}, {0, 235, 255}, {0, 173, 255}, {31, 0, 255},
    {11, 200, 200}, {255, 82, 0}, {0, 255, 245}, {0, 61, 255}, {0, 255, 112}, {0, 255, 133},
    {255, 0, 0}, {255, 163, 0}, {255, 102, 0}, {194, 255, 0}, {0, 143, 255}, {51, 255, 0},
    {0, 82, 255}, {0, 255, 41}, {0, 255, 173}, {10, 0, 255}, {173, 255, 0}, {0, 255, 153},
    {255, 92, 0}, {255, 0, 255}, {255, 0, 245}, {255, 0, 102}, {255, 173, 0}, {255, 0, 20},
    {255, 184, 184}, {0, 31, 255}, {0, 255, 61}, {0, 71, 255}, {255, 0, 204}, {0, 255, 194},
    {0, 255, 82}, {0, 10, 255}, {0, 112, 255}, {51, 0, 255}, {0, 194, 255}, {0, 122, 255},
    {0, 255, 163}, {255, 153, 0}, {0, 255, 10}, {255, 112, 0}, {143, 255, 0}, {82, 0, 255},
    {163, 255, 0}, {255, 235, 0}, {8, 184, 170}, {133, 0, 255}, {0, 255, 92}, {184, 0, 255},
    {255, 0, 31}, {0, 184, 255}, {0, 214, 255}, {255, 0, 112}, {92, 255, 0}, {0, 224, 255},
    {112, 224, 255}, {70, 184, 160}, {163, 0, 255}, {153, 0, 255}, {71, 255, 0}, {255, 0, 163},
    {255, 204, 0}, {255, 0, 143}, {0, 255, 235}, {133, 255, 0}, {255, 0, 235}, {245, 0, 255},
    {255, 0, 122}, {255, 245, 0}, {10, 190, 212}, {214, 255, 0}, {0, 204, 255}, {20, 0, 255},
    {255, 255, 0}, {0, 153, 255}, {0, 41, 255}, {0, 255, 204}, {41, 0, 255}, {41, 255, 0},
    {173, 0, 255}, {0, 245, 255}, {71, 0, 255}, {122, 0, 255}, {0, 255, 184}, {0, 92, 255},
    {184, 255, 0}, {0, 133, 255}, {255, 214, 0}, {25, 194, 194}, {102, 255, 0}, {92, 0, 255},
};
constexpr Rgb kCityscapesPalette[] = {
    {128, 64, 128}, {244, 35, 232}, {70, 70, 70}, {102, 102, 156}, {190, 153, 153}, {153, 153, 153},
    {250, 170, 30}, {220, 220, 0}, {107, 142, 35}, {152, 251, 152}, {70, 130, 180}, {220, 20, 60},
    {255, 0, 0}, {0, 0, 142}, {0, 0, 70}, {0, 60, 100}, {0, 80, 100}, {0, 0, 230},
    {119, 11, 32},
};
// clang-format on

std::array<int, 256> make_ade_lut() {
  std::array<int, 256> lut{};
  lut.fill(kInvalidLabel);
  lut[0] = kIgnoreIndex;
  for (int k = 1; k <= 150; ++k) lut[k] = k - 1;
  lut[255] = kIgnoreIndex;
  return lut;
}

// Label ids 0..33 (cityscapesScripts labels.py; the license plate, id -1, is not drawn into
// *_labelIds.png) and 255 (ignore, as mmseg writes it); 34..254 are no label id: a file holding
// them is not a labelIds PNG (a train-id or colour file under that name), refused by pack.
std::array<int, 256> make_cityscapes_lut() {
  std::array<int, 256> lut{};
  lut.fill(kInvalidLabel);
  for (int id = 0; id <= 33; ++id) lut[id] = kIgnoreIndex;
  lut[255] = kIgnoreIndex;
  const int label_ids[19] = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33};
  for (int train_id = 0; train_id < 19; ++train_id) lut[label_ids[train_id]] = train_id;
  return lut;
}

LayoutInfo make_ade20k() {
  LayoutInfo info;
  info.name = dataset_layout_name(Layout::kAde20k);
  info.class_names.assign(std::begin(kAdeClasses), std::end(kAdeClasses));
  info.label_lut = make_ade_lut();
  info.mapping_name = "ade20k_reduce_zero_label";
  info.max_raw_label = 150;
  info.palette.assign(std::begin(kAdePalette), std::end(kAdePalette));
  info.train_folder = "training";
  info.val_folder = "validation";
  info.synth_classes = 12;
  info.synth_other_labels = {0};
  return info;
}

LayoutInfo make_cityscapes() {
  LayoutInfo info;
  info.name = dataset_layout_name(Layout::kCityscapes);
  info.class_names.assign(std::begin(kCityscapesClasses), std::end(kCityscapesClasses));
  info.label_lut = make_cityscapes_lut();
  info.mapping_name = "cityscapes_labelid_to_trainid";
  info.max_raw_label = 33;
  info.palette.assign(std::begin(kCityscapesPalette), std::end(kCityscapesPalette));
  info.train_folder = "train";
  info.val_folder = "val";
  info.synth_classes = 10;
  info.synth_other_labels = {0, 4};
  return info;
}

}  // namespace

std::array<uint8_t, 256> raw_label_of_train_id(Layout layout) {
  std::array<uint8_t, 256> raw{};
  std::array<bool, 256> taken{};
  const std::array<int, 256>& lut = label_lut(layout);
  for (int value = 0; value < 256; ++value) {
    const int train_id = lut[static_cast<size_t>(value)];
    if (train_id < 0 || train_id >= num_classes(layout) || taken[static_cast<size_t>(train_id)]) continue;
    raw[static_cast<size_t>(train_id)] = static_cast<uint8_t>(value);
    taken[static_cast<size_t>(train_id)] = true;
  }
  return raw;
}

const LayoutInfo& layout_info(Layout layout) {
  static const LayoutInfo kAde20k = make_ade20k();
  static const LayoutInfo kCityscapes = make_cityscapes();
  switch (layout) {
    case Layout::kAde20k: return kAde20k;
    case Layout::kCityscapes: return kCityscapes;
  }
  SEGRUN_THROW(DataError, "no facts for dataset layout " << static_cast<int>(layout));
}

Layout parse_layout(const std::string& name) {
  std::string valid;
  for (const auto& [layout_name, layout] : dataset_layouts()) {
    if (layout_name == name) return layout;
    valid += (valid.empty() ? "" : ", ") + layout_name;
  }
  SEGRUN_THROW(DataError, "unknown dataset layout '" << name << "' (valid: " << valid << ")");
}

}  // namespace segrun::data
