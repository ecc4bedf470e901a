// Palettes and colour pictures of label maps (data/palette.h).
#include "data/palette.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"

namespace segrun::data {

const std::vector<Rgb>& palette(Layout layout) { return layout_info(layout).palette; }

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
