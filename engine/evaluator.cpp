#include "engine/evaluator.h"

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/log.h"
#include "core/output_paths.h"
#include "core/progress.h"
#include "data/loader.h"
#include "data/palette.h"
#include "data/store.h"
#include "dist/device.h"
#include "engine/checkpoint.h"
#include "engine/label_io.h"
#include "engine/model_setup.h"
#include "engine/out_of_memory.h"
#include "models/segmentor.h"

namespace segrun::engine {
namespace {

namespace F = torch::nn::functional;

torch::Tensor resize_bilinear(const torch::Tensor& x, int64_t h, int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;
  return F::interpolate(
      x, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false));
}

// A crop of the inference input: rows [y1, y2), columns [x1, x2).
struct Window {
  int64_t y1, y2, x1, x2;
};

// mmseg slide_inference's windows of `crop` every `stride`, the last one flush with the border,
// row by row; every window has the same size, min(crop, image side). Whole mode: the image.
std::vector<Window> inference_windows(int64_t height, int64_t width, const EvalConfig& eval) {
  if (eval.mode != "slide") return {{0, height, 0, width}};
  const int64_t crop_h = eval.crop[0], crop_w = eval.crop[1];
  const int64_t stride_h = eval.stride[0], stride_w = eval.stride[1];
  const int64_t grids_h = std::max<int64_t>(height - crop_h + stride_h - 1, 0) / stride_h + 1;
  const int64_t grids_w = std::max<int64_t>(width - crop_w + stride_w - 1, 0) / stride_w + 1;
  std::vector<Window> windows;
  for (int64_t gy = 0; gy < grids_h; ++gy) {
    for (int64_t gx = 0; gx < grids_w; ++gx) {
      const int64_t y2 = std::min(gy * stride_h + crop_h, height), x2 = std::min(gx * stride_w + crop_w, width);
      windows.push_back({std::max<int64_t>(y2 - crop_h, 0), y2, std::max<int64_t>(x2 - crop_w, 0), x2});
    }
  }
  return windows;
}

// `images` [B, 3, h, w] padded at the bottom and right with zeros (the mean colour of normalized
// images) to at least min_side x min_side: a thin image, or a small one at a multi-scale 0.5,
// would otherwise be smaller than the backbone accepts. Unchanged when large enough.
torch::Tensor padded_to_min_side(const torch::Tensor& images, int64_t min_side) {
  const int64_t pad_bottom = std::max<int64_t>(min_side - images.size(2), 0);
  const int64_t pad_right = std::max<int64_t>(min_side - images.size(3), 0);
  if (pad_bottom == 0 && pad_right == 0) return images;
  return torch::constant_pad_nd(images, {0, pad_right, 0, pad_bottom}, 0.0);
}

// Occurrences of `view` in `views` (a scale listed twice counts twice, as it always did).
double multiplicity(const std::vector<TestView>& views, const TestView& view) {
  return static_cast<double>(std::count(views.begin(), views.end(), view));
}

void write_image(const std::string& path, const cv::Mat& image) {
  if (!cv::imwrite(path, image)) throw IoError(path + ": cannot write prediction");
}

// What a request asks to keep of one prediction besides its areas.
void keep_prediction(const EvalRequest& request, data::Layout layout, const data::ValSample& sample,
                     const torch::Tensor& pred) {
  const bool wants_picture = request.pictures && static_cast<int64_t>(request.pictures->size()) < request.picture_count;
  if (request.save_pred_dir.empty() && !wants_picture) return;
  const cv::Mat prediction = label_image(pred);
  if (!request.save_pred_dir.empty())
    write_prediction(request.save_pred_dir, sample.name, prediction, sample.original, layout, request.color);
  if (wants_picture) {
    cv::Mat panel;
    cv::hconcat(std::vector<cv::Mat>{sample.original, data::colorize_labels(label_image(sample.label), layout),
                                     data::colorize_labels(prediction, layout)},
                panel);
    request.pictures->push_back({sample.name, panel});
  }
}

}  // namespace

cv::Mat label_image(const torch::Tensor& label) {
  torch::Tensor u8 = label.to(torch::kCPU, torch::kUInt8).contiguous();
  return cv::Mat(static_cast<int>(u8.size(0)), static_cast<int>(u8.size(1)), CV_8U, u8.data_ptr<uint8_t>()).clone();
}

std::vector<torch::Tensor> infer_logits(models::SegmentorImpl& model, const std::vector<torch::Tensor>& images,
                                        const EvalConfig& eval) {
  if (images.empty()) return {};
  const int64_t height = images.front().size(2), width = images.front().size(3);
  for (const torch::Tensor& image : images)
    SEGRUN_CHECK(image.size(2) == height && image.size(3) == width, ModelError,
                 "infer_logits: images of different sizes " << images.front().sizes() << " and " << image.sizes());
  const std::vector<Window> windows = inference_windows(height, width, eval);
  const bool whole = eval.mode != "slide";
  std::vector<torch::Tensor> sums(images.size()), counts(images.size());
  if (!whole) {
    for (size_t i = 0; i < images.size(); ++i) {
      sums[i] = torch::zeros({1, model.num_classes(), height, width}, images[i].options());
      counts[i] = torch::zeros({1, 1, height, width}, images[i].options());
    }
  }
  // Every (image, window) crop in order, eval.batch of them per forward pass.
  const int64_t crops = static_cast<int64_t>(images.size() * windows.size());
  const int64_t per_pass = std::max(eval.batch, 1);
  const auto window_count = static_cast<int64_t>(windows.size());
  for (int64_t first = 0; first < crops; first += per_pass) {
    const int64_t last = std::min(first + per_pass, crops);
    std::vector<torch::Tensor> batch;
    for (int64_t c = first; c < last; ++c) {
      const Window& w = windows[static_cast<size_t>(c % window_count)];
      batch.push_back(images[static_cast<size_t>(c / window_count)].slice(2, w.y1, w.y2).slice(3, w.x1, w.x2));
    }
    const torch::Tensor crops_in = batch.size() == 1 ? batch.front().contiguous() : torch::cat(batch, 0);
    const torch::Tensor logits = model.predict_logits(padded_to_min_side(crops_in, model.min_input_side()))
                                     .slice(2, 0, crops_in.size(2))
                                     .slice(3, 0, crops_in.size(3));
    for (int64_t c = first; c < last; ++c) {
      const auto i = static_cast<size_t>(c / window_count);
      const torch::Tensor one = logits.slice(0, c - first, c - first + 1);
      if (whole) {
        sums[i] = one;
        continue;
      }
      const Window& w = windows[static_cast<size_t>(c % window_count)];
      sums[i].slice(2, w.y1, w.y2).slice(3, w.x1, w.x2).add_(one);
      counts[i].slice(2, w.y1, w.y2).slice(3, w.x1, w.x2).add_(1);
    }
  }
  if (!whole)
    for (size_t i = 0; i < images.size(); ++i) sums[i] = sums[i] / counts[i];
  return sums;
}

std::vector<TestView> test_views(const std::vector<double>& scales, bool flip) {
  std::vector<TestView> views;
  for (double scale : scales) {
    views.push_back({scale, false});
    if (flip) views.push_back({scale, true});
  }
  return views;
}

torch::Tensor multi_scale_base(const cv::Mat& original_bgr, const data::TestTransformOptions& options,
                               const EvalConfig& eval, bool multi_scale, const torch::Device& device) {
  if (!multi_scale || eval.ms_base != "image") return {};
  return data::original_image_tensor(original_bgr, options).to(device);
}

ViewSet eval_views(const EvalConfig& eval, bool multi_scale) {
  SEGRUN_CHECK(!eval.scales.empty(), ConfigError, "eval.scales: empty");
  SEGRUN_CHECK(!multi_scale || !eval.ms_scales.empty(), ConfigError, "eval.ms_scales: empty");
  ViewSet views;
  views.single = test_views(eval.scales, eval.flip);
  if (multi_scale) views.multi = test_views(eval.ms_scales, /*flip=*/true);
  for (const std::vector<TestView>* set : {&views.single, &views.multi})
    for (const TestView& v : *set)
      if (std::find(views.distinct.begin(), views.distinct.end(), v) == views.distinct.end())
        views.distinct.push_back(v);
  return views;
}

ViewScores score_views(models::SegmentorImpl& model, const torch::Tensor& image, const ViewSet& views, int64_t height,
                       int64_t width, const EvalConfig& eval, const std::string& what, const torch::Tensor& ms_image) {
  ViewScores out;
  out.single = torch::zeros({1, model.num_classes(), height, width}, image.options());
  if (!views.multi.empty()) out.multi = torch::zeros_like(out.single);
  // One inference of a view of a base image, added to each set that holds the view as often as
  // it holds it. A view both sets share is inferred once, unless the multi-scale set has its own
  // base image.
  struct Inference {
    const torch::Tensor* base;
    TestView view;
    double to_single, to_multi;
  };
  const bool own_ms_base = ms_image.defined() && !views.multi.empty();
  std::vector<Inference> inferences;
  for (const TestView& view : views.distinct) {
    const double in_single = multiplicity(views.single, view);
    const double in_multi = views.multi.empty() ? 0.0 : multiplicity(views.multi, view);
    if (!own_ms_base) {
      inferences.push_back({&image, view, in_single, in_multi});
      continue;
    }
    if (in_single > 0) inferences.push_back({&image, view, in_single, 0.0});
    if (in_multi > 0) inferences.push_back({&ms_image, view, 0.0, in_multi});
  }
  // Neighbours with the same base and scale (a view and its mirror) share one resize and their
  // crops share forward passes (eval.batch); the sums are added in the same order as one by one.
  for (size_t first = 0; first < inferences.size();) {
    size_t last = first + 1;
    while (last < inferences.size() && inferences[last].base == inferences[first].base &&
           inferences[last].view.scale == inferences[first].view.scale)
      ++last;
    std::vector<TestView> group;
    for (size_t k = first; k < last; ++k) group.push_back(inferences[k].view);
    std::vector<torch::Tensor> scores;
    try {
      scores = same_scale_view_scores(model, *inferences[first].base, group, height, width, eval);
    } catch (const c10::Error& e) {
      if (is_out_of_memory(e)) throw;  // said with the settings to lower by the callers (out_of_memory.h)
      throw ModelError(what + ": " + first_line(e.what_without_backtrace()));
    } catch (const std::exception& e) {
      throw ModelError(what + ": " + first_line(e.what()));
    }
    for (size_t k = first; k < last; ++k) {
      if (inferences[k].to_single > 0) out.single.add_(scores[k - first], inferences[k].to_single);
      if (inferences[k].to_multi > 0) out.multi.add_(scores[k - first], inferences[k].to_multi);
    }
    first = last;
  }
  return out;
}

void write_prediction(const std::string& dir, const std::string& name, const cv::Mat& prediction,
                      const cv::Mat& image_bgr, data::Layout layout, bool color) {
  write_image(dir + "/" + name + ".png", prediction);
  if (!color) return;
  write_image(dir + "/color/" + name + ".png", data::colorize_labels(prediction, layout));
  write_image(dir + "/overlay/" + name + ".jpg", data::overlay_labels(image_bgr, prediction, layout));
}

std::vector<torch::Tensor> same_scale_view_scores(models::SegmentorImpl& model, const torch::Tensor& image,
                                                  const std::vector<TestView>& views, int64_t height, int64_t width,
                                                  const EvalConfig& eval) {
  if (views.empty()) return {};
  const double scale = views.front().scale;
  torch::Tensor input = image;
  if (scale != 1.0) {
    auto h = static_cast<int64_t>(std::lround(image.size(2) * scale));
    auto w = static_cast<int64_t>(std::lround(image.size(3) * scale));
    input = resize_bilinear(image, std::max<int64_t>(h, 1), std::max<int64_t>(w, 1));
  }
  std::vector<torch::Tensor> inputs;
  for (const TestView& view : views) {
    SEGRUN_CHECK(view.scale == scale, ModelError,
                 "same_scale_view_scores: views at scales " << scale << " and " << view.scale);
    inputs.push_back(view.flip ? input.flip({3}) : input);
  }
  std::vector<torch::Tensor> scores = infer_logits(model, inputs, eval);
  for (size_t k = 0; k < views.size(); ++k) {
    if (views[k].flip) scores[k] = scores[k].flip({3});
    scores[k] = torch::softmax(resize_bilinear(scores[k], height, width), 1);
  }
  return scores;
}

namespace {

// `device`: the model's.
EvalOutcome evaluate_images(models::SegmentorImpl& model, const data::StoreReader& store, const Config& config,
                            dist::Communicator& comm, const EvalRequest& request, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const ViewSet views = eval_views(config.eval, request.multi_scale);

  IoUAccumulator single_acc(store.num_classes(), store.ignore_index(), device);
  IoUAccumulator multi_acc(store.num_classes(), store.ignore_index(), device);
  torch::Tensor confusion;
  if (request.confusion)
    confusion = torch::zeros({store.num_classes(), store.num_classes()},
                             torch::TensorOptions().dtype(torch::kLong).device(device));
  const auto test_options = data::test_transform_options(config.data);
  int64_t total = store.size();
  if (request.limit >= 0) total = std::min(total, request.limit);
  if (!request.save_pred_dir.empty()) std::filesystem::create_directories(request.save_pred_dir);
  if (!request.save_pred_dir.empty() && request.color) {
    std::filesystem::create_directories(request.save_pred_dir + "/color");
    std::filesystem::create_directories(request.save_pred_dir + "/overlay");
  }
  const data::Layout layout = data::parse_layout(config.data.layout);

  // Multi-label scores and targets of every image; each rank fills its rows, a sum all-reduce
  // gathers them.
  torch::Tensor label_scores, label_targets;
  const std::vector<int64_t> indices = data::val_indices(total, comm.rank(), comm.size());
  Progress progress("eval: rank 0's images", static_cast<int64_t>(indices.size()), "images",
                    request.show_progress && comm.rank() == 0);
  const bool skip_corrupt = config.data.on_corrupt == "skip";
  int64_t skipped = 0;
  for (int64_t index : indices) {
    data::ValSample sample;
    try {
      sample = data::load_val_sample(store, index, test_options);
    } catch (const data::CorruptRecordError& e) {
      if (!skip_corrupt) throw;
      log::warn("{}; left out of the evaluation (data.on_corrupt = \"skip\")", e.what());
      ++skipped;
      progress.advance();
      continue;
    }
    const int64_t height = sample.label.size(0), width = sample.label.size(1);
    const torch::Tensor image = sample.image.to(device);
    if (model.has_label_scores()) {
      torch::Tensor scores = model.label_scores(padded_to_min_side(image, model.min_input_side()));
      if (!label_scores.defined()) {
        label_scores = torch::zeros({total, model.num_classes()}, torch::kFloat64);
        label_targets = torch::zeros({total, model.num_classes()}, torch::kFloat64);
      }
      label_scores[index].copy_(scores[0]);
      torch::Tensor valid = sample.label.lt(model.num_classes()) & sample.label.ge(0);
      torch::Tensor present = sample.label.masked_select(valid).to(torch::kLong);
      if (present.numel() > 0) label_targets[index].index_fill_(0, std::get<0>(torch::_unique(present)), 1.0);
    }
    const ViewScores scores =
        score_views(model, image, views, height, width, config.eval,
                    config.data.val_store + ": record " + std::to_string(index) + " (" + sample.name + ")",
                    multi_scale_base(sample.original, test_options, config.eval, request.multi_scale, device));
    const torch::Tensor label = sample.label.to(device);
    torch::Tensor single_pred = scores.single.argmax(1)[0];
    single_acc.add(single_pred, label);
    torch::Tensor saved = single_pred;
    if (request.multi_scale) {
      saved = scores.multi.argmax(1)[0];
      multi_acc.add(saved, label);
    }
    if (request.confusion) confusion += confusion_matrix(saved, label, store.num_classes(), store.ignore_index());
    keep_prediction(request, layout, sample, saved);
    progress.advance();
  }
  progress.finish();
  EvalOutcome outcome;
  torch::Tensor skipped_sum = torch::full({1}, skipped, torch::TensorOptions().dtype(torch::kLong).device(device));
  comm.allreduce(skipped_sum);
  outcome.skipped_records = skipped_sum.item<int64_t>();
  comm.allreduce(single_acc.mutable_areas());
  outcome.single = single_acc.summarize();
  if (request.multi_scale) {
    comm.allreduce(multi_acc.mutable_areas());
    outcome.multi = multi_acc.summarize();
    outcome.has_multi = true;
    outcome.ms_scales = config.eval.ms_scales;
  }
  if (request.confusion) {
    comm.allreduce(confusion);
    outcome.confusion = confusion.to(torch::kCPU);
  }
  // Every rank has the same model, so all or none run these collectives; a rank without records
  // contributes zeros of the same shape.
  if (model.has_label_scores()) {
    if (!label_scores.defined()) {
      label_scores = torch::zeros({total, model.num_classes()}, torch::kFloat64);
      label_targets = torch::zeros({total, model.num_classes()}, torch::kFloat64);
    }
    comm.allreduce(label_scores);
    comm.allreduce(label_targets);
    outcome.single.label_mAP = mean_average_precision(label_scores, label_targets, &outcome.single.label_mAP_prior);
  }
  if (was_training) model.train();
  return outcome;
}

}  // namespace

EvalOutcome evaluate(models::SegmentorImpl& model, const data::StoreReader& store, const Config& config,
                     dist::Communicator& comm, const EvalRequest& request) {
  const torch::Device device = dist::module_device(model);
  try {
    return evaluate_images(model, store, config, comm, request, device);
  } catch (const c10::Error& e) {
    if (!is_out_of_memory(e)) throw;
    throw out_of_memory_error(MemoryPhase::kEvaluation, "evaluation", config, device, e.what_without_backtrace());
  }
}

nlohmann::ordered_json eval_record_json(const EvalOutcome& outcome, const std::vector<std::string>& class_names) {
  nlohmann::ordered_json record = metrics_to_json(outcome.single, class_names);
  if (outcome.has_multi) {
    const nlohmann::ordered_json multi = metrics_to_json(outcome.multi, class_names);
    for (const char* key : {"aAcc", "mIoU", "mAcc"}) record[std::string(key) + "_ms"] = multi.at(key);
    record["per_class_ms"] = multi.at("per_class");
    record["ms_scales"] = outcome.ms_scales;
    record["ms_flip"] = true;
  }
  if (outcome.skipped_records > 0) record["skipped_records"] = outcome.skipped_records;
  return record;
}

CheckpointEvaluation evaluate_checkpoint(const Config& config, const dist::RankContext& context,
                                         const std::string& checkpoint, const EvalRequest& request) {
  SEGRUN_CHECK(!config.data.val_store.empty(), ConfigError,
               origin_of(config, "data.val_store") << ": data.val_store: not set (eval needs a validation store)");
  const DeviceSetup setup = setup_device(config, context);
  auto comm = setup.comm;
  data::StoreReader store(config.data.val_store);
  check_store_matches(store, config.data.val_store, config);
  if (!request.save_pred_dir.empty())
    require_new_or_empty_folder("--save-pred", request.save_pred_dir, "predictions go to a new or empty folder");
  auto model = build_model(config, store, comm, /*with_pretrained=*/false);
  model->to(setup.device);
  const CheckpointMeta meta = load_model_weights(checkpoint, config, store.num_classes(), *model);
  comm->barrier();  // every rank has checked --save-pred before any writes into it
  CheckpointEvaluation result;
  result.outcome = evaluate(*model, store, config, *comm, request);
  result.class_names = store.class_names();
  result.iteration = meta.next_iter;
  return result;
}

}  // namespace segrun::engine
