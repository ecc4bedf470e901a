// `segrun predict`: see predictor.h.
#include "engine/predictor.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "core/file_scan.h"
#include "core/output_paths.h"
#include "core/progress.h"
#include "data/classes.h"
#include "data/loader.h"
#include "data/pack.h"
#include "engine/checkpoint.h"
#include "engine/evaluator.h"
#include "engine/model_setup.h"
#include "engine/out_of_memory.h"
#include "models/segmentor.h"

namespace segrun::engine {
namespace {

namespace fs = std::filesystem;

bool has_image_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

}  // namespace

std::vector<std::string> list_predict_images(const std::vector<std::string>& inputs) {
  SEGRUN_CHECK(!inputs.empty(), ConfigError, "predict: no --images given");
  std::vector<std::string> images;
  for (const std::string& input : inputs) {
    std::error_code ec;
    if (fs::is_directory(input, ec)) {
      std::vector<std::string> found;
      for (const fs::path& path : files_in(input, /*recursive=*/true))
        if (has_image_extension(path)) found.push_back(path.string());
      SEGRUN_CHECK(!found.empty(), ConfigError,
                   "--images " << input << ": no image files (*.jpg, *.jpeg, *.png, *.bmp) in this folder or below");
      std::sort(found.begin(), found.end());
      images.insert(images.end(), found.begin(), found.end());
    } else {
      SEGRUN_CHECK(fs::is_regular_file(input, ec), ConfigError, "--images " << input << ": no such file or folder");
      images.push_back(input);
    }
  }
  // The same file named twice (a folder and a file in it) is predicted once.
  std::set<fs::path> seen_files;
  std::vector<std::string> unique;
  for (const std::string& image : images) {
    std::error_code ec;
    const fs::path canonical = fs::weakly_canonical(image, ec);
    if (seen_files.insert(ec ? fs::path(image) : canonical).second) unique.push_back(image);
  }
  images = std::move(unique);
  std::map<std::string, std::string> by_stem;
  for (const std::string& image : images) {
    const std::string stem = fs::path(image).stem().string();
    const auto [seen, inserted] = by_stem.emplace(stem, image);
    SEGRUN_CHECK(inserted, ConfigError,
                 "--images: " << seen->second << " and " << image << " share the name '" << stem
                              << "': their predictions would overwrite each other");
  }
  return images;
}

PredictOutcome predict_images(const Config& config, const dist::RankContext& context, const std::string& checkpoint,
                              const PredictRequest& request) {
  const std::vector<std::string> images = list_predict_images(request.inputs);
  require_new_or_empty_folder("--out", request.out_dir, "predictions go to a new or empty folder");
  const ViewSet views = eval_views(config.eval, request.multi_scale);
  const data::Layout layout = data::parse_layout(config.data.layout);
  const DeviceSetup setup = setup_device(config, context);
  dist::Communicator& comm = *setup.comm;
  auto model = build_model(config, data::class_names(layout), /*cooccurrence=*/{}, setup.comm,
                           /*with_pretrained=*/false);
  model->to(setup.device);
  const CheckpointMeta meta = load_model_weights(checkpoint, config, data::num_classes(layout), *model);
  // This rank's images must all be readable as images before anything is written: a bad file
  // would otherwise stop the command with some predictions written and --out no longer empty.
  const std::vector<int64_t> indices = data::val_indices(static_cast<int64_t>(images.size()), comm.rank(), comm.size());
  for (int64_t index : indices) {
    const std::string& path = images[static_cast<size_t>(index)];
    SEGRUN_CHECK(cv::haveImageReader(path), DataError, path << ": cannot decode image (not a format OpenCV reads)");
  }
  comm.barrier();  // every rank has checked --out and its images before any writes into it
  for (const char* sub : {"", "/color", "/overlay"}) fs::create_directories(request.out_dir + sub);
  if (request.label_ids) fs::create_directories(request.out_dir + "/label_ids");
  const std::array<uint8_t, 256> raw_of_train = data::raw_label_of_train_id(layout);

  torch::NoGradGuard no_grad;
  model->eval();
  const auto test_options = data::test_transform_options(config.data);
  Progress progress("predict: rank 0's images", static_cast<int64_t>(indices.size()), "images",
                    request.show_progress && comm.rank() == 0);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t index : indices) {
    const std::string& path = images[static_cast<size_t>(index)];
    cv::Mat original;
    try {
      original = data::decode_image(data::read_bytes(path), path);
    } catch (const DataError& e) {  // a file whose header passed the check above but that is cut short
      throw DataError(std::string(e.what()) + "; " + request.out_dir +
                      " holds the predictions made before it: remove it, or choose another --out, to run again");
    }
    torch::Tensor prediction;
    try {
      const torch::Tensor image = data::test_image_tensor(original, test_options).to(setup.device);
      const ViewScores scores =
          score_views(*model, image, views, original.rows, original.cols, config.eval, path,
                      multi_scale_base(original, test_options, config.eval, request.multi_scale, setup.device));
      prediction = (request.multi_scale ? scores.multi : scores.single).argmax(1)[0];
    } catch (const c10::Error& e) {
      if (!is_out_of_memory(e)) throw;
      throw out_of_memory_error(MemoryPhase::kEvaluation, "the prediction of " + path, config, setup.device,
                                e.what_without_backtrace());
    }
    const cv::Mat labels = label_image(prediction);
    const std::string stem = fs::path(path).stem().string();
    write_prediction(request.out_dir, stem, labels, original, layout, /*color=*/true);
    if (request.label_ids) {
      cv::Mat raw;
      cv::LUT(labels, cv::Mat(1, 256, CV_8U, const_cast<uint8_t*>(raw_of_train.data())), raw);
      const std::string file = request.out_dir + "/label_ids/" + stem + ".png";
      if (!cv::imwrite(file, raw)) throw IoError(file + ": cannot write prediction");
    }
    progress.advance();
  }
  progress.finish();
  PredictOutcome outcome;
  outcome.images = static_cast<int64_t>(images.size());
  outcome.rank_images = static_cast<int64_t>(indices.size());
  outcome.iteration = meta.next_iter;
  outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return outcome;
}

}  // namespace segrun::engine
