// Rank-level and data subcommands: synth, pack, inspect, train, eval, metrics, config.
#include "launcher/commands.h"

#include <nlohmann/json.hpp>
#include <opencv2/core/utility.hpp>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>

#include "cluster/local_launch.h"
#include "core/atomic_file.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/run_folder.h"
#include "data/classes.h"
#include "data/inspect.h"
#include "data/pack.h"
#include "data/synth.h"
#include "dist/communicator.h"
#include "engine/evaluator.h"
#include "engine/label_io.h"
#include "engine/trainer.h"
#include "sweeps/table.h"

namespace segrun::launcher {
namespace {

namespace fs = std::filesystem;

std::pair<int, int> parse_size(const std::string& text) {
  int h = 0, w = 0;
  char x = 0;
  std::istringstream in(text);
  if (!(in >> h >> x >> w) || (x != 'x' && x != 'X') || !in.eof() || h < 16 || w < 16 || h > 8192 ||
      w > 8192)
    throw ConfigError("--size '" + text + "': expected HxW with 16 <= H, W <= 8192 (e.g. 128x160)");
  return {h, w};
}

void init_rank_logging(const dist::RankContext& context, const std::string& level = "info") {
  log::LogOptions options;
  options.rank = context.world_rank;
  options.world = context.world_size;
  options.level = level;
  log::init_logging(options);
}

sweeps::ClassTable class_table_of(const engine::SegMetrics& m, const std::vector<std::string>& names) {
  sweeps::ClassTable table;
  table.class_names = names;
  table.iou = m.iou;
  table.acc = m.acc;
  table.mIoU = m.mIoU;
  table.mAcc = m.mAcc;
  table.aAcc = m.aAcc;
  return table;
}

}  // namespace

const dist::RankContext& MpiHolder::context() {
  if (!session_) {
    session_ = std::make_unique<dist::MpiSession>(argc_, argv_);
    dist::check_launched_world(session_->context());
    // Every rank-level command gets its parallelism from ranks, LibTorch's intra-op threads (set
    // by MpiSession) and the loader's workers; OpenCV's own pool on top would oversubscribe.
    cv::setNumThreads(1);
  }
  return session_->context();
}

int run_synth(const SynthCommand& cmd) {
  data::SynthOptions options;
  options.layout = data::parse_layout(cmd.layout);
  options.out = cmd.out;
  if (cmd.train < 1 || cmd.val < 1) throw ConfigError("--train and --val must be at least 1");
  options.train = cmd.train;
  options.val = cmd.val;
  std::tie(options.height, options.width) = parse_size(cmd.size);
  options.seed = cmd.seed;
  data::synthesize(options);
  log::info("wrote synthetic {} layout to {} ({} train, {} val, {}x{})", cmd.layout, cmd.out, cmd.train,
            cmd.val, options.height, options.width);
  return 0;
}

int run_pack(const PackCommand& cmd, MpiHolder& mpi) {
  data::PackOptions options;
  options.layout = data::parse_layout(cmd.layout);
  options.root = cmd.root;
  options.split = cmd.split;
  options.out = cmd.out;
  if (cmd.shards < 1) throw ConfigError("--shards must be at least 1");
  options.shards = cmd.shards;
  const auto& context = mpi.context();
  init_rank_logging(context);
  auto comm = dist::make_communicator("mpi", context);
  data::PackSummary summary = data::pack_store(options, *comm);
  log::info("packed {} records of {}/{} into {} shard(s): {}", summary.records, cmd.root, cmd.split,
            summary.shards, summary.manifest);
  return 0;
}

int run_inspect(const InspectCommand& cmd) {
  data::StoreSummary summary = data::inspect_store(cmd.store, cmd.verify);
  std::cout << (cmd.json ? data::to_json(summary) : data::to_text(summary)) << std::flush;
  if (!cmd.json && summary.crc_failures.empty()) std::cout << "\n";
  return summary.crc_failures.empty() ? 0 : 1;
}

// The multi-label line of heads with a label branch (CLIP-SP), after the class table.
void print_label_map(const engine::SegMetrics& m) {
  if (std::isnan(m.label_mAP)) return;
  std::cout << "multi-label mAP " << segrun::format("{:.2f}", m.label_mAP) << " (constant-score predictor "
            << segrun::format("{:.2f}", m.label_mAP_prior) << ")\n";
}

// An evaluation as the user reads it: the class table, the multi-label mAP when there is one and,
// for a multi-scale evaluation, the two-row SS / MS summary (mmseg's aug-test report).
void print_evaluation(const engine::EvalOutcome& outcome, const std::vector<std::string>& class_names) {
  std::cout << sweeps::format_class_table(class_table_of(outcome.single, class_names), sweeps::TableFormat::kText,
                                          /*skip_nan_rows=*/true);
  print_label_map(outcome.single);
  if (!outcome.has_multi) return;
  std::string scales;
  for (double s : outcome.ms_scales) scales += (scales.empty() ? "" : ", ") + segrun::format("{:g}", s);
  const auto row = [](const char* name, const engine::SegMetrics& m) {
    return segrun::format("{:<22} {:>7.2f} {:>7.2f} {:>7.2f}\n", name, m.aAcc, m.mIoU, m.mAcc);
  };
  std::cout << segrun::format("\n{:<22} {:>7} {:>7} {:>7}\n", "", "aAcc", "mIoU", "mAcc")
            << row("single scale (SS)", outcome.single) << row("multi-scale+flip (MS)", outcome.multi)
            << "MS: scales " << scales << ", each also flipped\n";
}

int launched_stop_signal(const std::vector<std::string>& command) {
  if (command.size() < 2 || command[0] != "train") return SIGUSR1;
  std::vector<std::string> overrides;
  for (size_t i = 2; i < command.size(); ++i) {
    if (command[i].rfind("-", 0) == 0) {
      if (command[i].find('=') == std::string::npos) ++i;  // --run-dir DIR, --resume auto
      continue;
    }
    if (command[i].find('=') != std::string::npos) overrides.push_back(command[i]);
  }
  try {
    return cluster::local_stop_signal(load_config(command[1], overrides).cluster.slurm.signal);
  } catch (const ConfigError&) {
    return SIGUSR1;
  }
}

int run_train(const TrainCommand& cmd, MpiHolder& mpi) {
  Config config = load_config(cmd.config, cmd.overrides);
  const auto& context = mpi.context();
  init_rank_logging(context, config.log.level);
  engine::TrainRequest request;
  request.run_dir = cmd.run_dir.empty() ? "runs/" + config.name : cmd.run_dir;
  request.resume = cmd.resume;
  engine::TrainOutcome outcome = engine::train(config, context, request);
  if (!outcome.finished) return kExitPreempted;
  if (context.is_root()) {
    if (outcome.evaluated) print_evaluation(outcome.evaluation, outcome.class_names);
    std::cout << "run directory: " << request.run_dir << " (" << outcome.iterations << " iterations, "
              << std::lround(outcome.seconds) << " s)\n";
  }
  return 0;
}

// The run directory of a checkpoint <run>/checkpoints/iter_<n>.pt ("" when it is not in one).
std::string run_dir_of_checkpoint(const std::string& checkpoint) {
  const fs::path folder = fs::path(checkpoint).parent_path();
  if (folder.filename() != "checkpoints") return "";
  fs::path run = folder.parent_path();
  if (run.empty()) run = ".";
  return fs::exists(RunFolder(run.string()).config_path()) ? run.string() : "";
}

// Appends the evaluation to <run>/metrics.jsonl ("mode": "eval") and, for a multi-scale
// evaluation of the checkpoint the run finished with, adds the *_ms metrics to its result.json
// (the single-scale fields written by training stay as they are).
void record_evaluation(const std::string& dir, const std::string& checkpoint,
                       const engine::CheckpointEvaluation& result) {
  using Json = nlohmann::ordered_json;
  RunFolder run(dir);
  Json record = engine::eval_record_json(result.outcome, result.class_names);
  record["iter"] = result.iteration;
  record["mode"] = "eval";
  record["checkpoint"] = checkpoint;
  run.append_metrics(record.dump());
  log::info("evaluation of iteration {} appended to {}", result.iteration, run.metrics_path());
  if (!result.outcome.has_multi || !fs::exists(run.result_path())) return;
  Json stored;
  try {
    stored = Json::parse(read_file(run.result_path()));
  } catch (const Json::exception& e) {
    throw DataError(run.result_path() + ": not a segrun result.json: " + e.what());
  }
  const int64_t finished = stored.value("iterations", static_cast<int64_t>(-1));
  if (finished != result.iteration) {
    log::info("{}: not updated: the checkpoint is iteration {}, the run's result is of iteration {}",
              run.result_path(), result.iteration, finished);
    return;
  }
  if (stored.contains("mIoU") && stored["mIoU"].is_number() && record["mIoU"].is_number() &&
      std::fabs(stored["mIoU"].get<double>() - record["mIoU"].get<double>()) > 1e-6)
    log::warn("single-scale mIoU {:.4f} differs from the {:.4f} of {}: the [eval] settings differ from "
              "the training run's; result.json keeps the training's single-scale figures",
              record["mIoU"].get<double>(), stored["mIoU"].get<double>(), run.result_path());
  for (const char* key : {"aAcc_ms", "mIoU_ms", "mAcc_ms", "per_class_ms", "ms_scales", "ms_flip"})
    stored[key] = record.at(key);
  write_file_atomic(run.result_path(), stored.dump(2) + "\n");
  log::info("mIoU_ms {:.2f} recorded in {}", result.outcome.multi.mIoU, run.result_path());
}

int run_eval(const EvalCommand& cmd, MpiHolder& mpi) {
  std::vector<std::string> overrides = cmd.overrides;
  if (cmd.ms) overrides.push_back("eval.report_ms=true");
  Config config = load_config(cmd.config, overrides);
  const auto& context = mpi.context();
  init_rank_logging(context, config.log.level);
  engine::EvalRequest request;
  request.save_pred_dir = cmd.save_pred;
  request.multi_scale = config.eval.report_ms;
  std::string record_dir;
  if (!cmd.no_record) record_dir = cmd.run_dir.empty() ? run_dir_of_checkpoint(cmd.checkpoint) : cmd.run_dir;
  if (!record_dir.empty())
    SEGRUN_CHECK(fs::is_directory(record_dir), ConfigError, "--run-dir " << record_dir << ": not a directory");
  auto result = engine::evaluate_checkpoint(config, context, cmd.checkpoint, request);
  if (context.is_root()) {
    const engine::EvalOutcome& outcome = result.outcome;
    if (cmd.json) {
      std::cout << engine::eval_record_json(outcome, result.class_names).dump(2) << "\n";
    } else {
      print_evaluation(outcome, result.class_names);
    }
    if (!cmd.run_dir.empty()) {
      record_evaluation(record_dir, cmd.checkpoint, result);
    } else if (!record_dir.empty()) {
      // Recording in the checkpoint's own run was not asked for: a failure (a full or read-only
      // disk) is reported, the printed evaluation stands.
      try {
        record_evaluation(record_dir, cmd.checkpoint, result);
      } catch (const std::exception& e) {
        log::warn("evaluation not recorded in {}: {}", record_dir, e.what());
      }
    }
  }
  return 0;
}

int run_metrics(const MetricsCommand& cmd) {
  engine::MetricsCommandOptions options;
  options.pred_dir = cmd.pred_dir;
  options.gt_dir = cmd.gt_dir;
  if (cmd.num_classes < 1 || cmd.num_classes > 255)
    throw ConfigError("--num-classes must be in 1..255 (got " + std::to_string(cmd.num_classes) + ")");
  options.num_classes = cmd.num_classes;
  options.ignore_index = cmd.ignore_index;
  options.reduce_zero_label = cmd.reduce_zero_label;
  options.json = cmd.json;
  engine::SegMetrics metrics = engine::evaluate_label_dirs(options);
  if (cmd.json)
    std::cout << engine::metrics_to_json(metrics, {}).dump(2) << "\n";
  else
    std::cout << sweeps::format_class_table(class_table_of(metrics, {}), sweeps::TableFormat::kText, true);
  return 0;
}

int run_config(const ConfigCommand& cmd) {
  std::cout << to_toml(load_config(cmd.config, cmd.overrides));
  return 0;
}

std::pair<double, int> read_result_headline(const std::string& result_json_path) {
  nlohmann::ordered_json result;
  try {
    result = nlohmann::ordered_json::parse(read_file(result_json_path));
    int classes = 0;
    for (const auto& item : result.at("per_class").items()) classes += item.value().is_null() ? 0 : 1;
    return {result.at("mIoU").is_null() ? NAN : result.at("mIoU").get<double>(), classes};
  } catch (const nlohmann::json::exception& e) {
    throw DataError(result_json_path + ": not a segrun result: " + e.what());
  }
}

}  // namespace segrun::launcher
