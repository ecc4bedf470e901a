// Palettes and colour pictures of label maps (data/palette.h).
#include "data/palette.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"

namespace segrun::data {

const std::vector<Rgb>& palette(Layout layout) {
  // clang-format off
  static const std::vector<Rgb> kAde20k{
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
  static const std::vector<Rgb> kCityscapes{
      {128, 64, 128}, {244, 35, 232}, {70, 70, 70}, {102, 102, 156}, {190, 153, 153}, {153, 153, 153},
      {250, 170, 30}, {220, 220, 0}, {107, 142, 35}, {152, 251, 152}, {70, 130, 180}, {220, 20, 60},
      {255, 0, 0}, {0, 0, 142}, {0, 0, 70}, {0, 60, 100}, {0, 80, 100}, {0, 0, 230},
      {119, 11, 32},
  };
  // clang-format on
  return layout == Layout::kAde20k ? kAde20k : kCityscapes;
}

cv::Mat colorize_labels(const cv::Mat& label, Layout layout) {
  if (label.type() != CV_8UC1) throw DataError("colorize_labels: the label map is not 8-bit single-channel");
  const auto& colors = palette(layout);
  cv::Mat lut(1, 256, CV_8UC3, cv::Scalar(0, 0, 0));
  for (size_t id = 0; id < colors.size(); ++id) {
    lut.at<cv::Vec3b>(0, static_cast<int>(id)) = cv::Vec3b(colors[id][2], colors[id][1], colors[id][0]);
  }
  cv::Mat label3, out;
  cv::cvtColor(label, label3, cv::COLOR_GRAY2BGR);
  cv::LUT(label3, lut, out);
  return out;
}

cv::Mat overlay_labels(const cv::Mat& image, const cv::Mat& label, Layout layout, double alpha) {
  if (image.type() != CV_8UC3 || image.size() != label.size()) {
    throw DataError("overlay_labels: the image (" + std::to_string(image.cols) + "x" + std::to_string(image.rows) +
                    ") and the label map (" + std::to_string(label.cols) + "x" + std::to_string(label.rows) +
                    ") differ in size, or the image is not 8-bit BGR");
  }
  cv::Mat blended;
  cv::addWeighted(image, 1.0 - alpha, colorize_labels(label, layout), alpha, 0.0, blended);
  image.copyTo(blended, label == kIgnoreIndex);
  return blended;
}

}  // namespace segrun::data
