// Palettes against the published tables (mmsegmentation's ADE20KDataset, cityscapesScripts'
// labels.py), and the colour / overlay pictures pixel by pixel.
#include "data/palette.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace segrun::data {
namespace {

TEST(Palette, AdeHas150ColoursInTrainIdOrder) {
  const auto& p = palette(Layout::kAde20k);
  ASSERT_EQ(p.size(), 150u);
  EXPECT_EQ(p[0], (Rgb{120, 120, 120}));  // wall
  EXPECT_EQ(p[2], (Rgb{6, 230, 230}));    // sky
  EXPECT_EQ(p[12], (Rgb{150, 5, 61}));    // person
  EXPECT_EQ(p[75], (Rgb{10, 0, 255}));    // swivel chair
  EXPECT_EQ(p[149], (Rgb{92, 0, 255}));   // flag
  EXPECT_EQ(p.size(), class_names(Layout::kAde20k).size());
}

TEST(Palette, CityscapesHas19TrainIdColours) {
  const auto& p = palette(Layout::kCityscapes);
  ASSERT_EQ(p.size(), 19u);
  EXPECT_EQ(p[0], (Rgb{128, 64, 128}));   // road
  EXPECT_EQ(p[10], (Rgb{70, 130, 180}));  // sky
  EXPECT_EQ(p[11], (Rgb{220, 20, 60}));   // person
  EXPECT_EQ(p[18], (Rgb{119, 11, 32}));   // bicycle
}

TEST(Palette, ColorizeWritesBgrAndIgnoredPixelsBlack) {
  cv::Mat label = (cv::Mat_<uint8_t>(1, 4) << 0, 18, 255, 200);
  cv::Mat colors = colorize_labels(label, Layout::kCityscapes);
  ASSERT_EQ(colors.type(), CV_8UC3);
  EXPECT_EQ(colors.at<cv::Vec3b>(0, 0), cv::Vec3b(128, 64, 128));  // road is symmetric
  EXPECT_EQ(colors.at<cv::Vec3b>(0, 1), cv::Vec3b(32, 11, 119));   // bicycle as B, G, R
  EXPECT_EQ(colors.at<cv::Vec3b>(0, 2), cv::Vec3b(0, 0, 0));       // ignore
  EXPECT_EQ(colors.at<cv::Vec3b>(0, 3), cv::Vec3b(0, 0, 0));       // beyond the palette
  EXPECT_THROW(colorize_labels(cv::Mat(2, 2, CV_8UC3), Layout::kAde20k), DataError);
}

TEST(Palette, OverlayBlendsHalfAndLeavesIgnoredPixelsAlone) {
  cv::Mat image(1, 2, CV_8UC3, cv::Scalar(100, 50, 200));
  cv::Mat label = (cv::Mat_<uint8_t>(1, 2) << 0, 255);
  cv::Mat out = overlay_labels(image, label, Layout::kAde20k);  // wall: RGB 120,120,120
  EXPECT_EQ(out.at<cv::Vec3b>(0, 0), cv::Vec3b(110, 85, 160));
  EXPECT_EQ(out.at<cv::Vec3b>(0, 1), cv::Vec3b(100, 50, 200));
  EXPECT_THROW(overlay_labels(image, cv::Mat(1, 3, CV_8UC1, cv::Scalar(0)), Layout::kAde20k), DataError);
}

}  // namespace
}  // namespace segrun::data
