#pragma once
// Colours of the classes, as the datasets publish them (LayoutInfo::palette, data/classes.h), and
// the pictures built from them: a colour label map and an overlay of it on the image.
//   ADE20K      the 150 colours of mmsegmentation's ADE20KDataset (train-id order).
//   Cityscapes  the 19 train-id colours of cityscapesScripts' labels.py (road 128,64,128 ...).
// Ignored pixels (kIgnoreIndex) and ids beyond the palette are drawn black.
// Colours are RGB; the cv::Mat results are BGR (OpenCV's order, ready for cv::imwrite).
// Pure functions and constant tables; thread-safe.

#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <vector>

#include "data/classes.h"

namespace segrun::data {

// num_classes(layout) colours, in train-id order.
const std::vector<Rgb>& palette(Layout layout);

// label: CV_8UC1 train ids (or kIgnoreIndex). Returns CV_8UC3 BGR of the same size. DataError when
// label is not CV_8UC1.
cv::Mat colorize_labels(const cv::Mat& label, Layout layout);

// image: CV_8UC3 BGR; label: CV_8UC1 of the same size. Returns (1 - alpha) * image +
// alpha * colorize_labels(label), except where the label is ignored (the image shows through).
// DataError when the sizes or types differ.
cv::Mat overlay_labels(const cv::Mat& image, const cv::Mat& label, Layout layout, double alpha = 0.5);

}  // namespace segrun::data
