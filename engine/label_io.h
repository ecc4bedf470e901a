#pragma once
// Label maps on disk and the `segrun metrics` command: score a folder of predicted label PNGs
// against a folder of ground-truth label PNGs with mmsegmentation's metrics (engine/metrics.h).
//
// Contract of evaluate_label_dirs: every `<stem>.png` in gt_dir is paired with `<stem>.png` in
// pred_dir (a GT without a prediction is a DataError naming it; predictions without a GT are
// ignored with a warning). Both files are 8-bit single-channel PNGs (else a DataError naming the
// file) of the same size (else a DataError naming both files). With reduce_zero_label the GT is
// mapped as mmseg's LoadAnnotations does for ADE20K: 0 -> 255 (ignore), k -> k-1, 255 stays 255;
// predictions are taken as they are (train ids). Files are processed in sorted stem order.
// With `layout` (ade20k | cityscapes) the ground truth is that dataset's raw annotations as
// released: gt_dir is searched recursively (Cityscapes' gtFine/<split>/<city>/), a Cityscapes GT
// `<stem>_gtFine_labelIds.png` pairs with the prediction `<stem>.png` (or
// `<stem>_leftImg8bit.png`), raw values map to train ids as `segrun data pack` maps them
// (data/classes.h), and the class count and names are the layout's.
// Every GT value (after any mapping) must be a class or the ignore index, and every predicted
// value a class: anything else is a DataError naming the file and the value (a wrong
// --num-classes, or raw labels scored without --layout, would otherwise skew the result).
// Threading: plain functions, no shared state.

#include <nlohmann/json_fwd.hpp>
#include <torch/types.h>

#include <string>
#include <vector>

#include "engine/metrics.h"

namespace segrun::engine {

struct MetricsCommandOptions {
  std::string pred_dir;
  std::string gt_dir;
  int num_classes = 0;  // 0 with a layout: the layout's
  std::string layout;   // "" | ade20k | cityscapes: raw ground truth of that dataset
  int ignore_index = 255;
  bool reduce_zero_label = false;
  bool json = false;                     // CLI output format: JSON instead of the text table
  std::vector<std::string> class_names;  // optional; "class_<i>" when empty (a layout's own with one)
  std::string confusion_csv;             // CLI: also write the confusion matrix here (segrun eval --confusion)
};

// Reads an 8-bit single-channel PNG as a uint8 [H, W] CPU tensor; DataError naming the file when
// it cannot be read or is not 8-bit single-channel.
torch::Tensor read_label_png(const std::string& path);

// mmseg reduce_zero_label on a label map of any integer dtype (values 0..255): 0 -> 255,
// 255 -> 255, k -> k-1. Returns the same dtype.
torch::Tensor reduce_zero_label(const torch::Tensor& label);

// With `confusion`, also the confusion matrix of the pairs (engine/metrics.h confusion_matrix):
// int64 [K, K] on the host.
SegMetrics evaluate_label_dirs(const MetricsCommandOptions& options, torch::Tensor* confusion = nullptr);

// The options with a layout's class count and names filled in (ConfigError when a given
// --num-classes contradicts the layout, or with neither); what evaluate_label_dirs scores with.
MetricsCommandOptions resolved_metrics_options(MetricsCommandOptions options);

// {"aAcc", "mIoU", "mAcc", "per_class": {name: IoU}, "per_class_acc": {name: Acc}, "pixels" (a
// count)}, plus "label_mAP", "label_mAP_prior" for models with a label branch; scores in percent
// like mIoU; NaN is written as null. Class order is kept. class_names may be empty ("class_<i>");
// otherwise its size must match and its names must be distinct (DataError).
nlohmann::ordered_json metrics_to_json(const SegMetrics& metrics, const std::vector<std::string>& class_names);

}  // namespace segrun::engine
