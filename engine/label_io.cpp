#include "engine/label_io.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
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
#include "core/file_scan.h"
#include "core/kinds.h"
#include "core/log.h"
#include "data/classes.h"
#include "data/pack.h"
#include "data/transforms.h"

namespace segrun::engine {
namespace fs = std::filesystem;

namespace {

// stem -> path of every regular *.png file (lower-case extension match) in dir (and its
// subfolders when `recursive`; core/file_scan.h: through links, no hidden files); a stem ending in
// one of `suffixes` loses it (frankfurt_000000_000294_gtFine_labelIds -> frankfurt_000000_000294),
// and with `suffix_required` a stem without one is not listed (Cityscapes' gtFine holds _color,
// _instanceIds and _labelIds PNGs of each image; the label ids are the ground truth). Two files
// of one stem are a DataError naming both.
std::map<std::string, fs::path> list_pngs(const std::string& dir, const char* what, bool recursive,
                                          const std::vector<std::string>& suffixes, bool suffix_required) {
  std::error_code ec;
  SEGRUN_CHECK(!fs::is_regular_file(dir, ec), ConfigError,
               "metrics: " << what << " " << dir << ": a file; give the folder that holds the PNGs");
  SEGRUN_CHECK(fs::is_directory(dir, ec), ConfigError, "metrics: " << what << " " << dir << ": no such directory");
  std::map<std::string, fs::path> out;
  for (const fs::path& path : files_in(dir, recursive)) {
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext != ".png") continue;
    std::string stem = path.stem().string();
    bool suffixed = false;
    for (const std::string& suffix : suffixes)
      if (stem.size() > suffix.size() && stem.compare(stem.size() - suffix.size(), suffix.size(), suffix) == 0) {
        stem.resize(stem.size() - suffix.size());
        suffixed = true;
        break;
      }
    if (suffix_required && !suffixed) continue;
    const auto [it, added] = out.emplace(stem, path);
    SEGRUN_CHECK(added, DataError,
                 "metrics: " << what << ": " << it->second.string() << " and " << path.string()
                             << " are both the image " << stem);
  }
  return out;
}

// DataError naming `path` and its first value that is neither below `num_classes` nor `allowed_extra`.
void check_label_range(const torch::Tensor& label, int num_classes, int allowed_extra, const std::string& path,
                       const char* hint) {
  const torch::Tensor wide = label.to(torch::kLong);
  const torch::Tensor bad = wide.ge(num_classes).logical_and(wide.ne(allowed_extra));
  if (!bad.any().item<bool>()) return;
  const int64_t value = wide.masked_select(bad)[0].item<int64_t>();
  SEGRUN_THROW(DataError, path << ": label value " << value << " is not a class (0.." << num_classes - 1 << ")"
                               << (allowed_extra >= 0 ? " nor the ignore index " + std::to_string(allowed_extra) : "")
                               << hint);
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
  const cv::Mat image = data::decode_label(data::read_bytes(path), path);
  const cv::Mat dense = image.isContinuous() ? image : image.clone();
  return torch::from_blob(const_cast<uint8_t*>(dense.ptr<uint8_t>()), {dense.rows, dense.cols}, torch::kUInt8).clone();
}

torch::Tensor reduce_zero_label(const torch::Tensor& label) {
  const auto wide = label.to(torch::kLong);
  const auto reduced =
      torch::where(wide.eq(0).logical_or(wide.eq(255)), torch::full({}, 255, wide.options()), wide - 1);
  return reduced.to(label.scalar_type());
}

MetricsCommandOptions resolved_metrics_options(MetricsCommandOptions o) {
  if (!o.layout.empty()) {
    const data::Layout layout = data::parse_layout(o.layout);
    const int k = data::num_classes(layout);
    SEGRUN_CHECK(
        o.num_classes == 0 || o.num_classes == k, ConfigError,
        "metrics: --num-classes " << o.num_classes << " but --layout " << o.layout << " has " << k << " classes");
    SEGRUN_CHECK(!o.reduce_zero_label, ConfigError,
                 "metrics: --reduce-zero-label with --layout: the layout maps its raw labels itself");
    // The layout maps its unlabelled values to 255 (data::kIgnoreLabel): another ignore index
    // would count them as a class, or name a value the files do not hold.
    SEGRUN_CHECK(o.ignore_index == 255, ConfigError,
                 "metrics: --ignore-index " << o.ignore_index << " with --layout " << o.layout
                                            << ": the layout maps its unlabelled pixels to 255 itself");
    o.num_classes = k;
    if (o.class_names.empty()) o.class_names = data::class_names(layout);
  }
  SEGRUN_CHECK(o.num_classes > 0, ConfigError, "metrics: --num-classes (or --layout) is required");
  SEGRUN_CHECK(o.class_names.empty() || static_cast<int>(o.class_names.size()) == o.num_classes, ConfigError,
               "metrics: " << o.class_names.size() << " class names given for --num-classes " << o.num_classes);
  return o;
}

namespace {

// What --layout says of the ground truth's values, parsed once; no LUT without --layout.
struct RawLabels {
  const std::array<int, 256>* lut = nullptr;  // raw value -> train id, ignore or kInvalidLabel
  int max_raw_label = 0;
  bool cityscapes = false;
};

RawLabels raw_labels_of(const std::string& layout_name) {
  RawLabels raw;
  if (layout_name.empty()) return raw;
  const data::Layout layout = data::parse_layout(layout_name);
  raw.lut = &data::label_lut(layout);
  raw.max_raw_label = data::max_raw_label(layout);
  raw.cityscapes = layout == data::Layout::kCityscapes;
  return raw;
}

}  // namespace

SegMetrics evaluate_label_dirs(const MetricsCommandOptions& options, torch::Tensor* confusion) {
  const MetricsCommandOptions o = resolved_metrics_options(options);
  const RawLabels raw = raw_labels_of(o.layout);
  const std::array<int, 256>* lut = raw.lut;
  const bool cityscapes = raw.cityscapes;
  const std::vector<std::string> gt_suffixes =
      cityscapes ? std::vector<std::string>{"_gtFine_labelIds"} : std::vector<std::string>{};
  const std::vector<std::string> pred_suffixes =
      cityscapes ? std::vector<std::string>{"_leftImg8bit"} : std::vector<std::string>{};
  const auto gts = list_pngs(o.gt_dir, "--gt", lut != nullptr, gt_suffixes, /*suffix_required=*/cityscapes);
  const auto preds = list_pngs(o.pred_dir, "--pred", false, pred_suffixes, /*suffix_required=*/false);
  SEGRUN_CHECK(!gts.empty(), ConfigError,
               "metrics: --gt " << o.gt_dir << ": no .png files"
                                << (lut ? "" : " in this folder (a dataset's nested ground truth: --layout)"));
  std::string layouts;
  for (const auto& [name, layout] : dataset_layouts()) layouts += (layouts.empty() ? "" : "|") + name;
  const std::string gt_hint =
      lut ? "" : "; raw dataset labels need --layout " + layouts + ", or --num-classes is wrong";
  // Under a layout the predictions must be its train ids: `segrun predict --label-ids` writes the
  // dataset's own ids into label_ids/ (for the benchmark servers), its <name>.png are train ids.
  const std::string pred_hint =
      lut ? "; predictions are " + o.layout + " train ids (segrun predict's <name>.png, not its label_ids/ folder)"
          : "; is --num-classes right?";

  IoUAccumulator acc(o.num_classes, o.ignore_index);
  if (confusion) *confusion = torch::zeros({o.num_classes, o.num_classes}, torch::kLong);
  for (const auto& [stem, gt_path] : gts) {
    const auto it = preds.find(stem);
    SEGRUN_CHECK(it != preds.end(), DataError,
                 "metrics: " << gt_path.string() << " has no prediction " << stem << ".png in " << o.pred_dir);
    torch::Tensor gt = read_label_png(gt_path.string());
    const torch::Tensor pred = read_label_png(it->second.string());
    SEGRUN_CHECK(gt.sizes() == pred.sizes(), DataError,
                 "metrics: size mismatch: " << it->second.string() << " is " << pred.size(0) << "x" << pred.size(1)
                                            << " (HxW) but " << gt_path.string() << " is " << gt.size(0) << "x"
                                            << gt.size(1));
    if (lut) {
      torch::Tensor mapped = torch::empty_like(gt);
      const uint8_t* in = gt.data_ptr<uint8_t>();
      uint8_t* out = mapped.data_ptr<uint8_t>();
      for (int64_t i = 0; i < gt.numel(); ++i) {
        const int v = (*lut)[in[i]];
        SEGRUN_CHECK(v != data::kInvalidLabel, DataError,
                     gt_path.string() << ": label value " << static_cast<int>(in[i]) << " is not a " << o.layout
                                      << " label (0.." << raw.max_raw_label << ")");
        out[i] = static_cast<uint8_t>(v);
      }
      gt = mapped;
    } else if (o.reduce_zero_label) {
      gt = reduce_zero_label(gt);
    }
    check_label_range(gt, o.num_classes, o.ignore_index, gt_path.string(), gt_hint.c_str());
    check_label_range(pred, o.num_classes, o.ignore_index, it->second.string(), pred_hint.c_str());
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
