#pragma once
// The mmsegmentation (0.x) train and test pipelines on OpenCV mats (mmseg@0066ce8's
// mmseg/datasets/pipelines/transforms.py; docs/performance.md compares them with mmseg's):
//   train: decode (BGR uint8 image, uint8 train-id label) -> RandomResize(scale, ratio) with mmcv
//          rescale semantics (image bilinear, label nearest) -> RandomCrop(crop, cat_max_ratio,
//          up to 10 re-draws) -> RandomFlip(prob) -> PhotoMetricDistortion -> BGR->RGB ->
//          Normalize(mean/std x255: CLIP's, or ImageNet's with data.normalize = "imagenet") -> Pad to
//          crop (image 0, label 255, bottom/right).
//   test:  Resize keep-ratio to `scale` (no ratio), BGR->RGB, Normalize; no pad; the label stays
//          at its original size (metrics are computed there).
// Every random draw comes from the caller's SampleRng, created for (seed, epoch, sample index,
// kAugment): the result depends on nothing else (not the thread, not the call order).
// Pure functions; thread-safe. Corrupt bytes -> DataError naming `what`.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "core/config.h"
#include "core/rng.h"

namespace segrun::data {

// CLIP image statistics x255, RGB order (DenseCLIP's Normalize).
constexpr std::array<double, 3> kClipMean{122.7709383, 116.7460125, 104.09373615};
constexpr std::array<double, 3> kClipStd{68.5005327, 66.6321579, 70.32316305};
// ImageNet statistics x255, RGB order (mmseg's default; MTA-CLIP's data_preprocessor).
constexpr std::array<double, 3> kImageNetMean{123.675, 116.28, 103.53};
constexpr std::array<double, 3> kImageNetStd{58.395, 57.12, 57.375};

struct TrainTransformOptions {
  std::array<int, 2> crop{512, 512};      // H, W
  std::array<int, 2> scale{2048, 512};    // mmseg img_scale: (long edge, short edge) bounds
  std::array<double, 2> ratio{0.5, 2.0};  // uniform in [ratio[0], ratio[1])
  double cat_max_ratio = 0.75;            // >= 1 disables the check
  double flip_prob = 0.5;
  bool photometric = true;
  std::array<double, 3> mean = kClipMean;
  std::array<double, 3> std = kClipStd;
  int ignore_index = 255;
};

struct TestTransformOptions {
  std::array<int, 2> scale{2048, 512};
  std::array<double, 3> mean = kClipMean;
  std::array<double, 3> std = kClipStd;
};

TrainTransformOptions train_transform_options(const DataConfig& config);
TestTransformOptions test_transform_options(const DataConfig& config);

// A transformed sample: image CV_32FC3 (RGB, normalized), label CV_8U (train ids, 255 ignore).
struct Sample {
  cv::Mat image;
  cv::Mat label;
};

cv::Mat decode_image(const std::vector<uint8_t>& bytes, const std::string& what);  // BGR uint8
cv::Mat decode_label(const std::vector<uint8_t>& bytes, const std::string& what);  // CV_8U

Sample train_transform(const cv::Mat& image_bgr, const cv::Mat& label, const TrainTransformOptions& options,
                       SampleRng& rng);
// Returns the normalized resized image; the label is not touched (kept at original size).
cv::Mat test_transform(const cv::Mat& image_bgr, const TestTransformOptions& options);

// ---- the individual steps (exposed for tests) ------------------------------------------------

// mmcv rescale_size: factor = min(max(scale)/long, min(scale)/short); new = int(old*factor + 0.5),
// at least 1 (mmcv would give 0 for a very thin image, which cv::resize refuses).
cv::Size rescale_size(cv::Size old_size, int scale_a, int scale_b);
// RandomResize draw: ratio ~ U[ratio0, ratio1), scale = (int(s0*ratio), int(s1*ratio)).
std::array<int, 2> random_scale(const TrainTransformOptions& options, SampleRng& rng);
// Crop box (x, y, w, h) with the cat_max_ratio re-draws, clamped to the image like numpy slicing.
cv::Rect random_crop_box(const cv::Mat& label, const TrainTransformOptions& options, SampleRng& rng);
// PhotoMetricDistortion in place on a BGR uint8 image.
void photometric_distortion(cv::Mat& image_bgr, SampleRng& rng);
// BGR uint8 -> RGB float32, (x - mean) / std.
cv::Mat normalize_image(const cv::Mat& image_bgr, const std::array<double, 3>& mean, const std::array<double, 3>& std);

}  // namespace segrun::data
