// TensorBoard event files read back by an independent reader (tests/engine/read_tensorboard.py:
// the `crc32c` module for the framing checksums, Google's protobuf runtime with TensorFlow's
// field numbers for the records), and CRC-32C against its published check value.
#include "engine/tensorboard_writer.h"

#include "engine/tensorboard_event.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/process.h"
#include "tests/scratch_dir.h"

namespace segrun::engine {
namespace {

namespace fs = std::filesystem;

// The reader's JSON for the event files under dir; fails the test when it exits non-zero. purge:
// what TensorBoard's Python event loader keeps after the SessionLog START events (the reader's --purge).
nlohmann::json read_back(const std::string& dir, int* exit_code = nullptr, std::string* output = nullptr,
                         bool purge = false) {
  std::vector<std::string> command{SEGRUN_TEST_PYTHON,
                                   std::string(SEGRUN_TEST_SOURCE_DIR) + "/tests/engine/read_tensorboard.py"};
  if (purge) command.push_back("--purge");
  command.push_back(dir);
  const process::Captured run = process::run_captured(command);
  if (exit_code) *exit_code = run.status.code;
  if (output) *output = run.err;
  if (exit_code) return {};
  EXPECT_TRUE(run.status.ok()) << run.err;
  return nlohmann::json::parse(run.out);
}

TEST(TensorBoard, Crc32cIsCastagnolisWithItsCheckValue) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32c(check.data(), check.size()), 0xE3069283u);  // RFC 3720 B.4 / the CRC catalogue
  EXPECT_EQ(crc32c("", 0), 0u);
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c(check.data(), check.size()), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

// Events worked out by hand from protobuf's encoding guide (tag = field << 3 | wire type; varints
// 7 bits a byte, low first; fixed64/fixed32 little endian): the same bytes libprotobuf gives.
TEST(TensorBoard, EventsAreProtobufsWireFormatByteForByte) {
  using bytes = std::string;
  // wall_time 1.0 = 0x3FF0000000000000 (field 1, fixed64: 0x09), file_version (field 3: 0x1a).
  EXPECT_EQ(encode_file_version_event(1.0), bytes("\x09\0\0\0\0\0\0\xf0\x3f\x1a\x0d"
                                                  "brain.Event:2",
                                                  24));
  // wall_time 0 and step 0 are left out (proto3); a oneof member (simple_value 0) is not.
  EXPECT_EQ(encode_scalars_event(0, 0, {{"a", 0.0f}}), bytes("\x2a\x0a\x0a\x08\x0a\x01"
                                                             "a\x15\0\0\0\0",
                                                             12));
  // step 300 = varint ac 02 (field 2: 0x10); 1.5f = 0x3FC00000; two values, one summary.
  EXPECT_EQ(encode_scalars_event(0, 300, {{"x", 1.5f}, {"", -2.0f}}),
            bytes("\x10\xac\x02\x2a\x11\x0a\x08\x0a\x01x\x15\0\0\xc0\x3f\x0a\x05\x15\0\0\0\xc0", 22));
  // A negative step is ten varint bytes (sign-extended to 64 bits).
  EXPECT_EQ(encode_scalars_event(0, -1, {}), bytes("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x2a\x00", 13));
  // A 200-byte tag has a two-byte length (c8 01); the image: height 2, width 3, colorspace 3.
  const std::string long_tag(200, 't');
  const std::string scalars = encode_scalars_event(0, 0, {{long_tag, 1.0f}});
  EXPECT_EQ(scalars.substr(0, 8), bytes("\x2a\xd3\x01\x0a\xd0\x01\x0a\xc8", 8));
  EXPECT_EQ(scalars.size(), 3u + 3u + 3u + 200u + 5u);
  EXPECT_EQ(encode_image_event(0, 7, "i", {2, 3, 3, "PNG"}),
            bytes("\x10\x07\x2a\x12\x0a\x10\x0a\x01i\x22\x0b\x08\x02\x10\x03\x18\x03\x22\x03PNG", 22));
  // session_log (field 7, length-delimited: 0x3a) holding status START (field 1, varint 1).
  EXPECT_EQ(encode_session_start_event(0, 6), bytes("\x10\x06\x3a\x02\x08\x01", 6));
  EXPECT_EQ(encode_session_start_event(1.0, 6), bytes("\x09\0\0\0\0\0\0\xf0\x3f\x10\x06\x3a\x02\x08\x01", 15));
}

// A run logs steps 1-10 (and a validation at 10), stops, and resumes from its checkpoint of
// step 5: the resumed writer's file sorts after the first one (here: the same second and
// process), and starts with SessionLog START at step 6, so that TensorBoard's event loader keeps
// steps 1-5 of the first file and only the resumed run's from 6 on.
TEST(TensorBoard, AResumedRunsFileTellsTensorBoardToDropTheAbandonedSteps) {
  testing::ScratchDir dir("tensorboard_resume");
  std::vector<uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)), png));
  std::string first_path, resumed_path;
  {
    TensorBoardWriter first(dir.str("tb"));
    first_path = first.path();
    for (int step = 1; step <= 10; ++step) first.add_scalar("train/loss", 10 + step, step);
    first.add_scalar("val/mIoU", 2.95, 10);
    first.add_png("val/img_0", png, 4, 4, 3, 10);
  }
  {
    TensorBoardWriter resumed(dir.str("tb"), 6);
    resumed_path = resumed.path();
    for (int step = 6; step <= 12; ++step) resumed.add_scalar("train/loss", 100 + step, step);
    resumed.add_scalar("val/mIoU", 3.5, 12);
  }
  EXPECT_NE(resumed_path, first_path);
  EXPECT_LT(fs::path(first_path).filename(), fs::path(resumed_path).filename());

  const nlohmann::json raw = read_back(dir.str("tb"));
  EXPECT_EQ(raw["files"], 2);
  EXPECT_EQ(raw["file_version"], nlohmann::json::parse(R"(["brain.Event:2", "brain.Event:2"])"));
  EXPECT_EQ(raw["session_log"], nlohmann::json::parse("[[1, 6, 1]]"));  // second file, step 6, START
  EXPECT_EQ(raw["scalars"]["train/loss"].size(), 17u);                  // both files intact

  const nlohmann::json shown = read_back(dir.str("tb"), nullptr, nullptr, /*purge=*/true);
  EXPECT_EQ(shown["scalars"]["train/loss"],
            nlohmann::json::parse("[[1, 11], [2, 12], [3, 13], [4, 14], [5, 15], [6, 106], [7, 107], [8, 108], "
                                  "[9, 109], [10, 110], [11, 111], [12, 112]]"));
  EXPECT_EQ(shown["scalars"]["val/mIoU"], nlohmann::json::parse("[[12, 3.5]]"));
  EXPECT_EQ(shown["images"]["val/img_0"], nlohmann::json::array());

  // A fresh run's file has no START: nothing of a folder's earlier files is dropped.
  testing::ScratchDir fresh("tensorboard_fresh");
  TensorBoardWriter(fresh.str("tb")).add_scalar("train/loss", 1.0, 1);
  EXPECT_EQ(read_back(fresh.str("tb"))["session_log"], nlohmann::json::array());
}

TEST(TensorBoard, AnIndependentReaderDecodesScalarsImagesAndMetricsRecords) {
  testing::ScratchDir dir("tensorboard");
  std::string path;
  {
    TensorBoardWriter writer(dir.str("tb"));
    path = writer.path();
    writer.add_scalar("train/loss", 2.5, 10);
    writer.add_scalar("train/loss", 1.25, 20);
    cv::Mat panel(6, 9, CV_8UC3, cv::Scalar(10, 20, 30));
    std::vector<uint8_t> png;
    ASSERT_TRUE(cv::imencode(".png", panel, png));
    writer.add_png("val/img_0", png, panel.cols, panel.rows, 3, 20);
    add_metrics_record(writer, nlohmann::ordered_json::parse(
                                   R"({"iter": 20, "mode": "train", "loss": 1.5, "decode.loss_ce": 1.0,
                                       "lr": 0.001, "images_per_s": 12.5, "data_wait_fraction": 0.25})"));
    add_metrics_record(writer, nlohmann::ordered_json::parse(
                                   R"({"aAcc": 80.0, "mIoU": 41.5, "per_class": {"wall": 50.0, "sky": null},
                                       "per_class_acc": {"wall": 75.0, "sky": null}, "iter": 20, "mode": "val"})"));
  }
  EXPECT_NE(fs::path(path).filename().string().find("events.out.tfevents."), std::string::npos);
  const nlohmann::json events = read_back(dir.str("tb"));
  EXPECT_EQ(events["files"], 1);
  EXPECT_EQ(events["file_version"], nlohmann::json::array({"brain.Event:2"}));
  const auto& scalars = events["scalars"];
  EXPECT_EQ(scalars["train/loss"], nlohmann::json::parse("[[10, 2.5], [20, 1.25], [20, 1.5]]"));
  EXPECT_EQ(scalars["train/decode.loss_ce"], nlohmann::json::parse("[[20, 1.0]]"));
  EXPECT_NEAR(scalars["train/lr"][0][1].get<double>(), 0.001, 1e-9);  // stored as float
  EXPECT_EQ(scalars["train/images_per_s"][0][1], 12.5);
  EXPECT_EQ(scalars["train/data_wait_fraction"][0][1], 0.25);
  EXPECT_EQ(scalars["val/mIoU"], nlohmann::json::parse("[[20, 41.5]]"));
  EXPECT_EQ(scalars["val/aAcc"], nlohmann::json::parse("[[20, 80.0]]"));
  EXPECT_EQ(scalars["val/IoU.wall"], nlohmann::json::parse("[[20, 50.0]]"));
  EXPECT_EQ(scalars["val/Acc.wall"], nlohmann::json::parse("[[20, 75.0]]"));
  EXPECT_FALSE(scalars.contains("val/IoU.sky"));  // undefined IoU is not a point on a curve
  EXPECT_FALSE(scalars.contains("train/iter"));
  EXPECT_EQ(scalars.size(), 9u) << scalars.dump();
  const auto& image = events["images"]["val/img_0"][0];
  EXPECT_EQ(image["step"], 20);
  EXPECT_EQ(image["width"], 9);
  EXPECT_EQ(image["height"], 6);
  EXPECT_EQ(image["colorspace"], 3);
  EXPECT_EQ(image["decoded"], nlohmann::json::parse("[6, 9, 3]"));
}

TEST(TensorBoard, TheReaderRejectsAFlippedByteSoItsChecksumsAreReallyChecked) {
  testing::ScratchDir dir("tensorboard_flip");
  std::string path;
  {
    TensorBoardWriter writer(dir.str("tb"));
    path = writer.path();
    writer.add_scalar("train/loss", 2.5, 10);
  }
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(-6, std::ios::end);  // inside the last record's data
  file.put('\x7f');
  file.close();
  int code = 0;
  std::string output;
  read_back(dir.str("tb"), &code, &output);
  EXPECT_NE(code, 0);
  EXPECT_NE(output.find("data checksum mismatch"), std::string::npos) << output;
}

TEST(TensorBoard, AnUnwritableFolderIsAnErrorNamingIt) {
  testing::ScratchDir dir("tensorboard_bad");
  std::ofstream(dir.str("file")) << "x";
  try {
    TensorBoardWriter writer(dir.str("file/tb"));
    FAIL() << "created a writer under a file";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("file/tb"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace segrun::engine
