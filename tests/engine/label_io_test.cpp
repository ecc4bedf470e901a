#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "core/error.h"
#include "engine/label_io.h"
#include "tests/engine/test_util.h"

namespace segrun::engine {
namespace {

namespace fs = std::filesystem;

// The 4x4 hand example of metrics_test.cpp (K = 4): mIoU 40.476..., mAcc 69.047..., aAcc 69.23...
const uint8_t kLabel[16] = {0, 0, 1, 1, 0, 0, 1, 1, 255, 255, 0, 0, 0, 1, 1, 255};
const uint8_t kPred[16] = {0, 1, 1, 1, 0, 0, 2, 1, 2, 2, 0, 1, 0, 1, 2, 0};

void write_png(const fs::path& path, const uint8_t* values, int rows, int cols) {
  cv::Mat m(rows, cols, CV_8UC1);
  for (int i = 0; i < rows * cols; ++i) m.data[i] = values[i];
  ASSERT_TRUE(cv::imwrite(path.string(), m)) << path;
}

struct Dirs {
  testing::ScratchDir root;
  fs::path pred, gt;
  explicit Dirs(const std::string& tag) : root(tag), pred(root.path() / "pred"), gt(root.path() / "gt") {
    fs::create_directories(pred);
    fs::create_directories(gt);
  }
  MetricsCommandOptions options() const {
    MetricsCommandOptions o;
    o.pred_dir = pred.string();
    o.gt_dir = gt.string();
    o.num_classes = 4;
    return o;
  }
};

void expect_hand_metrics(const SegMetrics& m, int64_t copies) {
  EXPECT_NEAR(m.mIoU, 40.476190476190474, 1e-12);
  EXPECT_NEAR(m.mAcc, 69.04761904761905, 1e-12);
  EXPECT_NEAR(m.aAcc, 69.23076923076923, 1e-12);
  EXPECT_EQ(m.pixels, 13 * copies);
  EXPECT_TRUE(std::isnan(m.iou[3]));
}

TEST(LabelIo, EvaluatesPairedDirectories) {
  Dirs d("labels-plain");
  // Two images with the same content; an extra prediction without GT is ignored.
  for (const char* stem : {"a", "b"}) {
    write_png(d.gt / (std::string(stem) + ".png"), kLabel, 4, 4);
    write_png(d.pred / (std::string(stem) + ".png"), kPred, 4, 4);
  }
  write_png(d.pred / "orphan.png", kPred, 4, 4);
  expect_hand_metrics(evaluate_label_dirs(d.options()), 2);
}

TEST(LabelIo, ReduceZeroLabel) {
  Dirs d("labels-reduce");
  // Raw ADE-style GT: 0 = "other" (ignored), class c stored as c + 1.
  uint8_t raw[16];
  for (int i = 0; i < 16; ++i) raw[i] = kLabel[i] == 255 ? 0 : static_cast<uint8_t>(kLabel[i] + 1);
  write_png(d.gt / "x.png", raw, 4, 4);
  write_png(d.pred / "x.png", kPred, 4, 4);
  auto o = d.options();
  o.reduce_zero_label = true;
  expect_hand_metrics(evaluate_label_dirs(o), 1);

  const auto mapped = reduce_zero_label(torch::tensor({0, 1, 2, 150, 254, 255}).to(torch::kUInt8));
  EXPECT_EQ(mapped.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(mapped, torch::tensor({255, 0, 1, 149, 253, 255}).to(torch::kUInt8)));
}

TEST(LabelIo, MissingPredictionNamesTheFile) {
  Dirs d("labels-missing");
  write_png(d.gt / "a.png", kLabel, 4, 4);
  write_png(d.gt / "zz_missing.png", kLabel, 4, 4);
  write_png(d.pred / "a.png", kPred, 4, 4);
  try {
    evaluate_label_dirs(d.options());
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("zz_missing.png"), std::string::npos) << e.what();
  }
}

TEST(LabelIo, SizeMismatchNamesBothFiles) {
  Dirs d("labels-size");
  write_png(d.gt / "img.png", kLabel, 4, 4);
  write_png(d.pred / "img.png", kPred, 2, 8);
  try {
    evaluate_label_dirs(d.options());
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find((d.gt / "img.png").string()), std::string::npos) << what;
    EXPECT_NE(what.find((d.pred / "img.png").string()), std::string::npos) << what;
  }
}

TEST(LabelIo, RejectsBadInputs) {
  Dirs d("labels-bad");
  cv::Mat color(4, 4, CV_8UC3, cv::Scalar(1, 2, 3));
  ASSERT_TRUE(cv::imwrite((d.gt / "c.png").string(), color));
  write_png(d.pred / "c.png", kPred, 4, 4);
  EXPECT_THROW(evaluate_label_dirs(d.options()), DataError);  // 3-channel GT
  EXPECT_THROW(read_label_png((d.gt / "nope.png").string()), DataError);
  auto o = d.options();
  o.gt_dir = (d.root.path() / "absent").string();
  EXPECT_THROW(evaluate_label_dirs(o), ConfigError);  // a command-line mistake: exit 2
  fs::remove(d.gt / "c.png");
  EXPECT_THROW(evaluate_label_dirs(d.options()), ConfigError);  // empty GT dir
  o = d.options();
  o.num_classes = 0;
  EXPECT_THROW(evaluate_label_dirs(o), ConfigError);
}

// Cityscapes ground truth as released: gtFine/val/<city>/<stem>_gtFine_labelIds.png in label
// ids, predictions <stem>.png in train ids. Train ids 0..3 are label ids 7, 8, 11, 12 (road,
// sidewalk, building, wall); label id 0 (unlabeled) is ignored: the hand example again.
TEST(LabelIo, ACityscapesLayoutReadsTheReleasedGroundTruth) {
  Dirs d("labels-cityscapes");
  const std::map<uint8_t, uint8_t> label_id{{0, 7}, {1, 8}, {2, 11}, {3, 12}, {255, 0}};
  uint8_t raw[16];
  for (int i = 0; i < 16; ++i) raw[i] = label_id.at(kLabel[i]);
  // Beside each labelIds PNG the release has _color and _instanceIds PNGs (and a polygons JSON):
  // not ground truth. A city folder that links to shared storage is one of the split's; a macOS
  // ._ file is not.
  const uint8_t other[16] = {200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215};
  const fs::path shared = d.root.path() / "shared" / "lindau";
  fs::create_directories(shared);
  fs::create_directory_symlink(shared, d.gt / "lindau");
  for (const char* city : {"frankfurt", "lindau"}) {
    fs::create_directories(d.gt / city);
    const std::string stem = std::string(city) + "_000000_000019";
    write_png(d.gt / city / (stem + "_gtFine_labelIds.png"), raw, 4, 4);
    write_png(d.gt / city / (stem + "_gtFine_color.png"), other, 4, 4);
    write_png(d.gt / city / (stem + "_gtFine_instanceIds.png"), other, 4, 4);
    write_png(d.gt / city / ("._" + stem + "_gtFine_labelIds.png"), other, 4, 4);
    write_png(d.pred / (stem + ".png"), kPred, 4, 4);
  }
  MetricsCommandOptions o = d.options();
  o.num_classes = 0;
  o.layout = "cityscapes";
  expect_hand_metrics(evaluate_label_dirs(o), 2);
  // The layout puts unlabelled pixels at 255: another ignore index is refused.
  o.ignore_index = 0;
  EXPECT_THROW(evaluate_label_dirs(o), ConfigError);
  o.ignore_index = 255;
  const MetricsCommandOptions resolved = resolved_metrics_options(o);
  EXPECT_EQ(resolved.num_classes, 19);
  EXPECT_EQ(resolved.class_names.front(), "road");

  o = d.options();
  o.layout = "cityscapes";  // --num-classes 4 contradicts the layout's 19
  EXPECT_THROW(evaluate_label_dirs(o), ConfigError);
  // The same labels flattened and scored without --layout: label id 7 is not a class of 4; the
  // message says why (the mIoU of such a run used to be printed, from the few ids below 4).
  const fs::path flat = d.root.path() / "flat";
  fs::create_directories(flat);
  write_png(flat / "frankfurt_000000_000019.png", raw, 4, 4);
  o = d.options();
  o.gt_dir = flat.string();
  try {
    evaluate_label_dirs(o);
    ADD_FAILURE() << "raw label ids were scored as train ids";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("label value 7 is not a class (0..3) nor the ignore index 255; raw dataset "
                                         "labels need --layout ade20k|cityscapes"),
              std::string::npos)
        << e.what();
  }
}

TEST(LabelIo, AValueOutsideTheClassesIsAnErrorNotDropped) {
  Dirs d("labels-range");
  write_png(d.gt / "a.png", kLabel, 4, 4);
  uint8_t pred[16];
  std::copy(kPred, kPred + 16, pred);
  pred[5] = 9;  // --num-classes 4
  write_png(d.pred / "a.png", pred, 4, 4);
  try {
    evaluate_label_dirs(d.options());
    ADD_FAILURE() << "a prediction of class 9 of 4 was scored";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), (d.pred / "a.png").string() +
                                         ": label value 9 is not a class (0..3) nor the ignore index 255; is "
                                         "--num-classes right?");
  }
}

TEST(LabelIo, JsonHasPercentAndNullsInClassOrder) {
  SegMetrics m;
  m.iou = {5.0 / 7.0, 0.0, std::nan("")};
  m.acc = {0.5, std::nan(""), std::nan("")};
  m.mIoU = 35.0;
  m.mAcc = 50.0;
  m.aAcc = 60.0;
  m.pixels = 42;
  const auto j = metrics_to_json(m, {"wall", "sky", "bed"});
  EXPECT_DOUBLE_EQ(j["mIoU"].get<double>(), 35.0);
  EXPECT_DOUBLE_EQ(j["mAcc"].get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(j["aAcc"].get<double>(), 60.0);
  EXPECT_EQ(j["pixels"].get<int64_t>(), 42);
  const auto& per_class = j["per_class"];
  ASSERT_EQ(per_class.size(), 3u);
  EXPECT_EQ(per_class.begin().key(), "wall");
  EXPECT_NEAR(per_class["wall"].get<double>(), 500.0 / 7.0, 1e-12);
  EXPECT_DOUBLE_EQ(per_class["sky"].get<double>(), 0.0);
  EXPECT_TRUE(per_class["bed"].is_null());
  EXPECT_DOUBLE_EQ(j["per_class_acc"]["wall"].get<double>(), 50.0);
  EXPECT_TRUE(j["per_class_acc"]["sky"].is_null());

  const auto unnamed = metrics_to_json(m, {});
  EXPECT_TRUE(unnamed["per_class"].contains("class_0"));
  EXPECT_TRUE(unnamed["per_class"]["class_2"].is_null());
  EXPECT_THROW(metrics_to_json(m, {"a", "b"}), DataError);
  EXPECT_THROW(metrics_to_json(m, {"a", "a", "b"}), DataError);
}

}  // namespace
}  // namespace segrun::engine
