#include "engine/model_setup.h"

#include <filesystem>
#include <sstream>

#include "core/config_changes.h"
#include "core/error.h"
#include "core/log.h"
#include "core/run_folder.h"
#include "data/classes.h"
#include "data/store.h"
#include "dist/device.h"
#include "engine/precision.h"
#include "models/segmentor.h"

namespace segrun::engine {

namespace fs = std::filesystem;

DeviceSetup setup_device(const Config& config, const dist::RankContext& context) {
  DeviceSetup setup;
  try {
    setup.context = dist::place_on_device(context, config.dist.device);
  } catch (const ConfigError& e) {
    throw ConfigError(origin_of(config, "dist.device") + ": " + e.what());
  }
  setup.device = dist::torch_device(setup.context);
  dist::bind_thread(setup.device);
  // Training, its validation, `eval` and `predict` of the run all compute with the same math.
  set_math_modes(config.train.tf32, config.train.cudnn_benchmark);
  dist::CommunicatorOptions options;
  options.timeout_s = config.dist.timeout_s;  // the collective watchdog's deadline (mpi and nccl)
  setup.comm = dist::make_communicator(config.dist.backend, setup.context, options);
  log::info("{}: device {}, backend {}", setup.context.label(), dist::describe_device(setup.context),
            setup.comm->backend_name());
  return setup;
}

void check_store_matches(const data::StoreReader& store, const std::string& path, const Config& config) {
  const auto expected = data::class_names(data::parse_layout(config.data.layout)).size();
  if (static_cast<size_t>(store.num_classes()) != expected)
    throw DataError(path + ": store has " + std::to_string(store.num_classes()) + " classes but data.layout = \"" +
                    config.data.layout + "\" has " + std::to_string(expected));
}

std::string model_signature(const Config& config, int num_classes) {
  return config.model.backbone + "/w" + std::to_string(config.model.width) + "/" + config.model.head + "/K" +
         std::to_string(num_classes);
}

std::string describe_model_difference(const std::string& checkpoint_signature, const std::string& config_signature) {
  const auto parts = [](const std::string& signature) {
    std::vector<std::string> out;
    std::stringstream in(signature);
    for (std::string part; std::getline(in, part, '/');) out.push_back(part);
    const bool form = out.size() == 4 && out[1].size() > 1 && out[1][0] == 'w' && out[3].size() > 1 && out[3][0] == 'K';
    if (form) out[1].erase(0, 1), out[3].erase(0, 1);
    return form ? out : std::vector<std::string>{};
  };
  const std::vector<std::string> was = parts(checkpoint_signature), is = parts(config_signature);
  if (was.empty() || is.empty()) return "";
  static const char* const kSettings[] = {"model.backbone", "model.width", "model.head", "classes (of the store)"};
  std::string out;
  for (size_t i = 0; i < was.size(); ++i)
    if (was[i] != is[i])
      out += (out.empty() ? "" : "; ") + std::string(kSettings[i]) + (i == 3 ? ": " : " = ") + was[i] +
             " in the checkpoint, " + is[i] + " in the config";
  return out;
}

CheckpointMeta load_model_weights(const std::string& checkpoint, const Config& config, int num_classes,
                                  torch::nn::Module& model) {
  try {
    return load_checkpoint(checkpoint, model_signature(config, num_classes), model, nullptr);
  } catch (const UnreadableCheckpointError&) {
    throw;
  } catch (const CheckpointError& e) {
    // Only a run folder's checkpoint has the run's config two levels up (a file beside a
    // downloaded model.pt is not what trained it).
    const fs::path folder = fs::path(checkpoint).parent_path();
    const RunFolder run(folder.parent_path().empty() ? "." : folder.parent_path().string());
    std::error_code ec;
    if (folder.filename() != "checkpoints" || !fs::is_regular_file(run.config_path(), ec) || !run.holds_run_files())
      throw;
    const fs::path run_config = run.config_path();
    std::vector<ConfigChange> model_changes;
    try {
      // The keys of the signature are named by load_checkpoint's own message already.
      for (const ConfigChange& c : config_changes(load_config(run_config.string()), config))
        if (c.key.rfind("model.", 0) == 0 && c.key != "model.backbone" && c.key != "model.width" &&
            c.key != "model.head")
          model_changes.push_back(c);
    } catch (const ConfigError&) {  // a config.toml that no longer reads says nothing here
      throw e;
    }
    if (model_changes.empty()) throw;
    throw CheckpointError(std::string(e.what()) + "; " + describe_changes(model_changes, "this command"));
  }
}

std::shared_ptr<models::SegmentorImpl> build_model(const Config& config, const std::vector<std::string>& class_names,
                                                   const std::vector<int64_t>& cooccurrence,
                                                   std::shared_ptr<dist::Communicator> comm, bool with_pretrained) {
  models::BuildOptions build;
  build.config = config.model;
  if (!with_pretrained) {
    build.config.pretrained.clear();
    build.weights_from_checkpoint = true;
  }
  build.num_classes = static_cast<int>(class_names.size());
  build.class_names = class_names;
  build.cooccurrence = cooccurrence;
  build.comm = std::move(comm);
  build.crop_size = config.data.crop[0];
  try {
    return models::build_segmentor(build);
  } catch (const ConfigError& e) {  // name the file (or the override) the bad model key came from
    throw ConfigError(origin_of_message(config, e.what()) + ": " + e.what());
  }
}

std::shared_ptr<models::SegmentorImpl> build_model(const Config& config, const data::StoreReader& store,
                                                   std::shared_ptr<dist::Communicator> comm, bool with_pretrained) {
  return build_model(config, store.class_names(), store.cooccurrence(), std::move(comm), with_pretrained);
}

}  // namespace segrun::engine
