#include "engine/label_io.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <system_error>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "core/error.h"
#include "core/log.h"

namespace segrun::engine {
namespace fs = std::filesystem;

namespace {

// stem -> path of every regular *.png file (lower-case extension match) in dir.
std::map<std::string, fs::path> list_pngs(const std::string& dir, const char* what) {
  std::error_code ec;
  SEGRUN_CHECK(fs::is_directory(dir, ec), DataError, "metrics: " << what << " directory " << dir << " does not exist");
  std::map<std::string, fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext != ".png") continue;
    out.emplace(entry.path().stem().string(), entry.path());
  }
  return out;
}

std::string class_name(const std::vector<std::string>& names, size_t i) {
  return names.empty() ? "class_" + std::to_string(i) : names[i];
}

nlohmann::ordered_json percent_or_null(double fraction_or_percent, bool is_fraction) {
  if (std::isnan(fraction_or_percent)) return nullptr;
  return is_fraction ? fraction_or_percent * 100.0 : fraction_or_percent;
}

}  // namespace

torch::Tensor read_label_png(const std::string& path) {
  std::error_code ec;
  SEGRUN_CHECK(fs::is_regular_file(path, ec), DataError, path << ": label PNG does not exist");
  const cv::Mat image = cv::imread(path, cv::IMREAD_UNCHANGED);
  SEGRUN_CHECK(!image.empty(), DataError, path << ": cannot read label PNG");
  SEGRUN_CHECK(image.type() == CV_8UC1, DataError,
               path << ": label PNG must be 8-bit single-channel, got " << image.channels() << " channel(s) of "
                    << image.elemSize1() * 8 << "-bit samples");
  const cv::Mat dense = image.isContinuous() ? image : image.clone();
  return torch::from_blob(const_cast<uint8_t*>(dense.ptr<uint8_t>()), {dense.rows, dense.cols}, torch::kUInt8).clone();
}

torch::Tensor reduce_zero_label(const torch::Tensor& label) {
  const auto wide = label.to(torch::kLong);
  const auto reduced =
      torch::where(wide.eq(0).logical_or(wide.eq(255)), torch::full({}, 255, wide.options()), wide - 1);
  return reduced.to(label.scalar_type());
}

SegMetrics evaluate_label_dirs(const MetricsCommandOptions& o, torch::Tensor* confusion) {
  SEGRUN_CHECK(o.num_classes > 0, ConfigError, "metrics: --num-classes must be positive, got " << o.num_classes);
  SEGRUN_CHECK(o.class_names.empty() || static_cast<int>(o.class_names.size()) == o.num_classes, ConfigError,
               "metrics: " << o.class_names.size() << " class names given for --num-classes " << o.num_classes);
  const auto gts = list_pngs(o.gt_dir, "--gt");
  const auto preds = list_pngs(o.pred_dir, "--pred");
  SEGRUN_CHECK(!gts.empty(), DataError, "metrics: no .png files in --gt directory " << o.gt_dir);

  IoUAccumulator acc(o.num_classes, o.ignore_index);
  if (confusion) *confusion = torch::zeros({o.num_classes, o.num_classes}, torch::kLong);
  for (const auto& [stem, gt_path] : gts) {
    const auto it = preds.find(stem);
    SEGRUN_CHECK(it != preds.end(), DataError,
                 "metrics: " << gt_path.string() << " has no prediction " << stem << ".png in " << o.pred_dir);
    torch::Tensor gt = read_label_png(gt_path.string());
    const torch::Tensor pred = read_label_png(it->second.string());
    SEGRUN_CHECK(gt.sizes() == pred.sizes(), DataError,
                 "metrics: size mismatch: " << it->second.string() << " is " << pred.size(1) << "x" << pred.size(0)
                                            << " but " << gt_path.string() << " is " << gt.size(1) << "x"
                                            << gt.size(0));
    if (o.reduce_zero_label) gt = reduce_zero_label(gt);
    acc.add(pred, gt);
    if (confusion) *confusion += confusion_matrix(pred, gt, o.num_classes, o.ignore_index);
  }
  size_t orphans = 0;
  std::string first_orphan;
  for (const auto& [stem, path] : preds) {
    if (gts.count(stem) == 0) {
      if (orphans++ == 0) first_orphan = path.string();
    }
  }
  if (orphans > 0) {
    log::warn("metrics: {} prediction(s) without ground truth ignored (first: {})", orphans, first_orphan);
  }
  return acc.summarize();
}

nlohmann::ordered_json metrics_to_json(const SegMetrics& m, const std::vector<std::string>& class_names) {
  SEGRUN_CHECK(class_names.empty() || class_names.size() == m.iou.size(), DataError,
               "metrics: " << class_names.size() << " class names for " << m.iou.size() << " classes");
  nlohmann::ordered_json j;
  j["aAcc"] = percent_or_null(m.aAcc, false);
  j["mIoU"] = percent_or_null(m.mIoU, false);
  j["mAcc"] = percent_or_null(m.mAcc, false);
  nlohmann::ordered_json iou = nlohmann::ordered_json::object();
  nlohmann::ordered_json acc = nlohmann::ordered_json::object();
  std::set<std::string> seen;
  for (size_t c = 0; c < m.iou.size(); ++c) {
    const std::string name = class_name(class_names, c);
    SEGRUN_CHECK(seen.insert(name).second, DataError, "metrics: duplicate class name '" << name << "'");
    iou[name] = percent_or_null(m.iou[c], true);
    acc[name] = c < m.acc.size() ? percent_or_null(m.acc[c], true) : nlohmann::ordered_json();
  }
  j["per_class"] = std::move(iou);
  j["per_class_acc"] = std::move(acc);
  j["pixels"] = m.pixels;
  if (!std::isnan(m.label_mAP)) {
    j["label_mAP"] = m.label_mAP;
    j["label_mAP_prior"] = m.label_mAP_prior;
  }
  return j;
}

}  // namespace segrun::engine
