#pragma once
// What training and evaluation share to turn a config plus a store into a model: the check that
// the store fits the config, the model signature recorded in (and checked against) checkpoints,
// and the model built from `[model]` for the store's classes. Used by the trainer and by
// evaluate_checkpoint, so `segrun train` and `segrun eval` can never disagree about a model.

#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/config.h"
#include "dist/communicator.h"
#include "engine/checkpoint.h"

namespace segrun::data {
class StoreReader;
}
namespace segrun::models {
class SegmentorImpl;
}

namespace segrun::engine {

// The rank's device and communicator for one run (train or eval): dist.device resolved for this
// rank (dist/device.h), made current for the calling thread, the math modes of train.tf32 and
// train.cudnn_benchmark set (process-wide), and dist.backend opened for it
// (dist.timeout_s is the collective watchdog's deadline, for either backend). Logs
// one line naming the rank, its host and its device (every rank's log file
// has it; rank 0 also prints it). Errors: ConfigError for dist.device = "cuda" without a GPU.
struct DeviceSetup {
  dist::RankContext context;  // the caller's, with the device filled in
  torch::Device device = torch::kCPU;
  std::shared_ptr<dist::Communicator> comm;
};
DeviceSetup setup_device(const Config& config, const dist::RankContext& context);

// DataError "<path>: store has K classes but data.layout = ... has K'" when they differ.
void check_store_matches(const data::StoreReader& store, const std::string& path, const Config& config);

// "clip_rn50/w16/fpn/K150": what a checkpoint must have been written by to load into this config.
std::string model_signature(const Config& config, int num_classes);
// Where two signatures differ, by the setting behind each part: "model.width = 8 in the
// checkpoint, 16 in the config" ("; " between parts; the classes are the store's); "" when either
// is not a signature of this form.
std::string describe_model_difference(const std::string& checkpoint_signature, const std::string& config_signature);

// load_checkpoint of a model's weights for evaluation or prediction (no optimizer), expecting
// model_signature(config, num_classes). When the checkpoint's tensors do not fit the model that
// `config` builds, the CheckpointError also names the model.* keys outside the signature in which
// `config` differs from the run's own config.toml beside the checkpoint (<run>/checkpoints/X.pt ->
// <run>/config.toml): model.fpn_channels, say.
CheckpointMeta load_model_weights(const std::string& checkpoint, const Config& config, int num_classes,
                                  torch::nn::Module& model);

// The segmentor of config.model for the store's classes; SyncBN layers use `comm`.
// with_pretrained = false skips importing model.pretrained (a checkpoint will provide every weight).
std::shared_ptr<models::SegmentorImpl> build_model(const Config& config, const data::StoreReader& store,
                                                   std::shared_ptr<dist::Communicator> comm,
                                                   bool with_pretrained = true);

// The same from a class list (and its co-occurrence counts, may be empty) instead of a store, e.g.
// `segrun model info`, which has the layout's classes but no store.
std::shared_ptr<models::SegmentorImpl> build_model(const Config& config, const std::vector<std::string>& class_names,
                                                   const std::vector<int64_t>& cooccurrence,
                                                   std::shared_ptr<dist::Communicator> comm,
                                                   bool with_pretrained = true);

}  // namespace segrun::engine
