// Label conventions against hand-written tables (mmsegmentation / cityscapesScripts).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/classes.h"

namespace segrun::data {
namespace {

using ::testing::HasSubstr;

TEST(Classes, AdeNamesAndCount) {
  const auto& names = class_names(Layout::kAde20k);
  ASSERT_EQ(names.size(), 150u);
  EXPECT_EQ(names[0], "wall");
  EXPECT_EQ(names[7], "bed");  // mmseg writes 'bed ' with a trailing space
  EXPECT_EQ(names[12], "person");
  EXPECT_EQ(names[44], "chest of drawers");
  EXPECT_EQ(names[149], "flag");
  EXPECT_EQ(num_classes(Layout::kAde20k), 150);
}

TEST(Classes, CityscapesNames) {
  const std::vector<std::string> expected = {
      "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
      "sky",  "person",   "rider",    "car",  "truck", "bus",  "train",         "motorcycle",   "bicycle"};
  EXPECT_EQ(class_names(Layout::kCityscapes), expected);
}

TEST(Classes, AdeReduceZeroLabel) {
  const auto& lut = label_lut(Layout::kAde20k);
  EXPECT_EQ(lut[0], 255);
  EXPECT_EQ(lut[1], 0);
  EXPECT_EQ(lut[2], 1);
  EXPECT_EQ(lut[8], 7);
  EXPECT_EQ(lut[150], 149);
  EXPECT_EQ(lut[255], 255);
  EXPECT_EQ(lut[151], kInvalidLabel);
  EXPECT_EQ(lut[173], kInvalidLabel);
  EXPECT_EQ(lut[254], kInvalidLabel);
  for (int k = 1; k <= 150; ++k) EXPECT_EQ(lut[k], k - 1) << k;
}

TEST(Classes, CityscapesLabelIdsToTrainIdsFullTable) {
  // labelId -> trainId from cityscapesScripts labels.py; the other ids 0..33 and 255 are
  // ignore; 34..254 are no label id (a file holding them is refused).
  std::array<int, 256> expected{};
  expected.fill(kInvalidLabel);
  for (int id = 0; id <= 33; ++id) expected[id] = 255;
  expected[255] = 255;
  expected[7] = 0;
  expected[8] = 1;
  expected[11] = 2;
  expected[12] = 3;
  expected[13] = 4;
  expected[17] = 5;
  expected[19] = 6;
  expected[20] = 7;
  expected[21] = 8;
  expected[22] = 9;
  expected[23] = 10;
  expected[24] = 11;
  expected[25] = 12;
  expected[26] = 13;
  expected[27] = 14;
  expected[28] = 15;
  expected[31] = 16;
  expected[32] = 17;
  expected[33] = 18;
  const auto& lut = label_lut(Layout::kCityscapes);
  for (int v = 0; v < 256; ++v) EXPECT_EQ(lut[v], expected[v]) << "labelId " << v;
}

// Every layout core/kinds.h names has a consistent row in the table.
TEST(Classes, EveryLayoutHasItsFacts) {
  for (const auto& [name, layout] : dataset_layouts()) {
    SCOPED_TRACE(name);
    const LayoutInfo& info = layout_info(layout);
    EXPECT_EQ(info.name, name);
    EXPECT_EQ(layout_name(layout), name);
    EXPECT_EQ(parse_layout(name), layout);
    const int k = static_cast<int>(info.class_names.size());
    EXPECT_GT(k, 0);
    EXPECT_EQ(info.palette.size(), info.class_names.size());
    EXPECT_FALSE(info.mapping_name.empty());
    EXPECT_FALSE(info.train_folder.empty());
    EXPECT_FALSE(info.val_folder.empty());
    EXPECT_GT(info.synth_classes, 0);
    EXPECT_LE(info.synth_classes, k);
    EXPECT_FALSE(info.synth_other_labels.empty());
    // Raw values up to max_raw_label map to a train id or ignore; each train id has a raw value.
    std::vector<bool> reached(static_cast<size_t>(k), false);
    for (int raw = 0; raw <= info.max_raw_label; ++raw) {
      const int id = info.label_lut[raw];
      EXPECT_TRUE(id == kIgnoreIndex || (id >= 0 && id < k)) << "raw " << raw << " -> " << id;
      if (id >= 0 && id < k) reached[static_cast<size_t>(id)] = true;
    }
    for (int id = 0; id < k; ++id) EXPECT_TRUE(reached[static_cast<size_t>(id)]) << "train id " << id;
    for (int raw : info.synth_other_labels) EXPECT_EQ(info.label_lut[raw], kIgnoreIndex) << "raw " << raw;
  }
  EXPECT_EQ(layout_info(Layout::kAde20k).max_raw_label, 150);
  EXPECT_EQ(layout_info(Layout::kCityscapes).max_raw_label, 33);
  EXPECT_EQ(mapping_name(Layout::kAde20k), "ade20k_reduce_zero_label");
  EXPECT_EQ(mapping_name(Layout::kCityscapes), "cityscapes_labelid_to_trainid");
}

// predict --label-ids: a train id back to the dataset's own value (cityscapesScripts' label ids;
// ADE20K's 1-based indices).
TEST(Classes, RawLabelOfTrainIdInvertsTheMapping) {
  const auto city = raw_label_of_train_id(Layout::kCityscapes);
  const int label_ids[19] = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33};
  for (int t = 0; t < 19; ++t) EXPECT_EQ(city[t], label_ids[t]) << "train id " << t;
  const auto ade = raw_label_of_train_id(Layout::kAde20k);
  for (int t = 0; t < 150; ++t) EXPECT_EQ(ade[t], t + 1) << "train id " << t;
}

TEST(Classes, ParseLayout) {
  EXPECT_EQ(parse_layout("ade20k"), Layout::kAde20k);
  EXPECT_EQ(parse_layout("cityscapes"), Layout::kCityscapes);
  try {
    parse_layout("coco");
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), HasSubstr("coco"));
    EXPECT_THAT(e.what(), HasSubstr("ade20k, cityscapes"));
  }
}

}  // namespace
}  // namespace segrun::data
