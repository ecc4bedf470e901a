// The run subcommands:
//   segrun train CONFIG|RUN_DIR [k=v...] [--run-dir D] [--resume auto|PATH]  (on every rank of
//                `launch`; exit 75 when stopped by a signal after checkpointing)
//   segrun eval CONFIG [k=v...] --checkpoint PT [--ms] [--save-pred DIR [--color]] [--confusion CSV] [--json]
//               [--run-dir D]
//   segrun eval RUN_DIR [k=v...] [--checkpoint PT|best] [...]    (its config.toml, newest checkpoint)
//   segrun predict CONFIG|RUN_DIR [k=v...] --images PATH... --out DIR [--checkpoint PT|best] [--ms]
//   segrun metrics --pred DIR --gt DIR --num-classes K|--layout L [...]  (engine::MetricsCommandOptions)
//   segrun config CONFIG|RUN_DIR [k=v...]                        (the resolved config as TOML)
//   segrun config --keys [PREFIX] [--format text|md]             (every key: type, default, range, meaning)
#include "launcher/command_group.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "core/atomic_file.h"
#include "core/config.h"
#include "core/config_changes.h"
#include "core/config_reference.h"
#include "core/error.h"
#include "core/kinds.h"
#include "core/latest_checkpoint.h"
#include "core/log.h"
#include "core/output_paths.h"
#include "core/run_folder.h"
#include "core/stop_request.h"
#include "engine/checkpoint.h"
#include "engine/evaluator.h"
#include "engine/label_io.h"
#include "engine/predictor.h"
#include "engine/trainer.h"
#include "launcher/mpi_holder.h"
#include "launcher/train_plan.h"
#include "sweeps/registry.h"
#include "sweeps/table.h"

namespace segrun::launcher {
namespace {

namespace fs = std::filesystem;

struct EvalCommand {
  std::string config;  // a config file, or a run folder (its config.toml; --checkpoint may be left out)
  std::vector<std::string> overrides;
  std::string checkpoint;  // "" = a run folder's newest
  std::string save_pred;
  bool color = false;
  bool json = false;
  bool ms = false;         // --ms: also multi-scale + flip (eval.report_ms = true)
  std::string run_dir;     // --run-dir: record the evaluation there (default: the checkpoint's run)
  bool no_record = false;  // --no-record: print only
  std::string confusion;   // --confusion FILE.csv: the confusion matrix, and the top confusions printed
};

struct PredictCommand {
  std::string config;  // a config file, or a run folder (as for eval)
  std::vector<std::string> overrides;
  std::string checkpoint;
  std::vector<std::string> images;
  std::string out;
  bool ms = false;
  bool label_ids = false;
};

struct ConfigCommand {
  std::string config;
  std::vector<std::string> overrides;
  const CLI::Option* keys = nullptr;  // --keys given: the key reference instead of a config
  std::string keys_prefix;            // --keys PREFIX: only the keys starting with it
  std::string format = "text";        // --format of the reference: text | md
};

// The names data.layout and --layout take (core/kinds.h).
std::vector<std::string> layout_names() {
  std::vector<std::string> names;
  for (const auto& [name, layout] : dataset_layouts()) names.push_back(name);
  return names;
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
  if (outcome.skipped_records > 0)
    std::cout << outcome.skipped_records
              << " corrupt record(s) left out (data.on_corrupt = \"skip\"): not comparable to a full evaluation\n";
  if (!outcome.has_multi) return;
  std::string scales;
  for (double s : outcome.ms_scales) scales += (scales.empty() ? "" : ", ") + segrun::format("{:g}", s);
  const auto row = [](const char* name, const engine::SegMetrics& m) {
    return segrun::format("{:<22} {:>7.2f} {:>7.2f} {:>7.2f}\n", name, m.aAcc, m.mIoU, m.mAcc);
  };
  std::cout << segrun::format("\n{:<22} {:>7} {:>7} {:>7}\n", "", "aAcc", "mIoU", "mAcc")
            << row("single scale (SS)", outcome.single) << row("multi-scale+flip (MS)", outcome.multi) << "MS: scales "
            << scales << ", each also flipped\n";
}

// eval / metrics --confusion: writes the matrix to `csv_path`, adds the file and the 10 most
// confused class pairs to the JSON `record`, and returns those pairs as text for the table's reader.
std::string write_confusion(const std::string& csv_path, const torch::Tensor& confusion,
                            const std::vector<std::string>& names, nlohmann::ordered_json& record) {
  write_file_atomic(csv_path, engine::confusion_csv(confusion, names));
  const std::vector<engine::Confusion> top = engine::top_confusions(confusion, 10);
  record["confusion_csv"] = csv_path;
  record["top_confusions"] = nlohmann::ordered_json::array();
  std::string text = top.empty() ? "\nno pixel of a class was predicted as another\n"
                                 : "\nmost confused (share of the true class's pixels):\n";
  for (const engine::Confusion& c : top) {
    const std::string& truth = names[static_cast<size_t>(c.truth)];
    const std::string& predicted = names[static_cast<size_t>(c.predicted)];
    record["top_confusions"].push_back(
        {{"truth", truth}, {"predicted", predicted}, {"pixels", c.pixels}, {"share", c.share}});
    text += segrun::format("  {:<24} -> {:<24} {:6.2f} %  ({} px)\n", truth, predicted, 100.0 * c.share, c.pixels);
  }
  return text + "confusion matrix (pixel counts, a row per true class): " + csv_path + "\n";
}

int run_train(const TrainCommand& cmd, MpiHolder& mpi) {
  const TrainPlan plan = plan_train(cmd);
  const Config& config = plan.config;
  // Before MPI starts and the model is built: a stop signal from the launcher or the terminal
  // during start-up is a stop request, not the end of the process.
  process::install_stop_handlers(process::preemption_signal(config.cluster.slurm.signal));
  const engine::TrainRequest& request = plan.request;
  const auto& context = mpi.context();
  init_rank_logging(context, config.log.level);
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

// The data settings of `config` under which an evaluation is not one of the run's own validation
// data: another validation store (resolved: "st/val", "st/val/" and "st/val/manifest.json" are
// one), or other data.* keys that change a result (data.scale, ...). "" when there are none, and
// for a run trained without a validation store (it has no validation figures of its own).
std::string other_data_than_the_runs(const Config& run_config, const Config& config) {
  if (run_config.data.val_store.empty()) return "";
  if (resolved_store_folder(run_config.data.val_store) != resolved_store_folder(config.data.val_store))
    return "data.val_store = " + config.data.val_store + ", the run validated on " + run_config.data.val_store;
  for (const ConfigChange& change : result_changes(run_config, config))
    if (change.key.rfind("data.", 0) == 0) return change.key + " = " + change.after + ", the run's is " + change.before;
  return "";
}

// Appends the evaluation to <run>/metrics.jsonl ("mode": "eval") and, for a multi-scale
// evaluation of the checkpoint the run finished with on the run's own validation data, adds the
// *_ms metrics to its result.json (the single-scale fields written by training stay as they are).
void record_evaluation(const std::string& dir, const std::string& checkpoint, const Config& config,
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
  if (const std::string problem = run.read_result(stored); !problem.empty()) {
    log::warn("{}: mIoU_ms not recorded; `{}` evaluates the run again (and sets the file aside)", problem,
              run.resume_command());
    return;
  }
  const int64_t finished = stored.value("iterations", static_cast<int64_t>(-1));
  if (finished != result.iteration) {
    log::info("{}: not updated: the checkpoint is iteration {}, the run's result is of iteration {}", run.result_path(),
              result.iteration, finished);
    return;
  }
  const std::string other_data = other_data_than_the_runs(load_config(run.config_path()), config);
  if (!other_data.empty()) {  // a table would show it as the run's own multi-scale figure
    log::warn("{}: not updated: this evaluation is of other data than the run's result ({})", run.result_path(),
              other_data);
    return;
  }
  if (stored.contains("mIoU") && stored["mIoU"].is_number() && record["mIoU"].is_number() &&
      std::fabs(stored["mIoU"].get<double>() - record["mIoU"].get<double>()) > 1e-6)
    log::warn(
        "single-scale mIoU {:.4f} differs from the {:.4f} of {}: the [eval] settings differ from "
        "the training run's; result.json keeps the training's single-scale figures",
        record["mIoU"].get<double>(), stored["mIoU"].get<double>(), run.result_path());
  for (const char* key : {"aAcc_ms", "mIoU_ms", "mAcc_ms", "per_class_ms", "ms_scales", "ms_flip"})
    stored[key] = record.at(key);
  write_file_atomic(run.result_path(), stored.dump(2) + "\n");
  log::info("mIoU_ms {:.2f} recorded in {}", result.outcome.multi.mIoU, run.result_path());
}

// What `eval` evaluates and `predict` predicts with (`command`): CONFIG with --checkpoint, or a run
// folder's config.toml with --checkpoint (`best`: the folder's best.pt, train.save_best) or else
// the folder's newest checkpoint. ConfigError naming what is missing.
struct EvalSource {
  std::string config;
  std::string checkpoint;
  std::string given;    // the command's argument
  bool newest = false;  // the checkpoint is the run folder's newest, chosen here
};
EvalSource eval_source(const std::string& command, const std::string& source, const std::string& given_checkpoint) {
  const std::string checkpoint = resolved_checkpoint_path("--checkpoint", given_checkpoint);  // "best", "" as they are
  std::error_code ec;
  if (!checkpoint.empty() && checkpoint != "best") {
    SEGRUN_CHECK(!fs::is_directory(checkpoint, ec), ConfigError,
                 "--checkpoint " << checkpoint << ": a folder, not a checkpoint file (iter_<n>.pt)");
    SEGRUN_CHECK(fs::is_regular_file(checkpoint, ec), ConfigError, "--checkpoint " << checkpoint << ": no such file");
  }
  if (!fs::is_directory(source, ec)) {
    SEGRUN_CHECK(!checkpoint.empty(), ConfigError,
                 command << ": --checkpoint is required (or give a run folder instead of " << source << ")");
    SEGRUN_CHECK(
        checkpoint != "best", ConfigError,
        "--checkpoint best: names a run folder's checkpoints/best.pt; give the run folder instead of " << source);
    return {source, checkpoint, source};
  }
  const RunFolder run(source);
  SEGRUN_CHECK(path_exists(run.config_path()), ConfigError,
               source << ": not a run folder (no config.toml); give a config file and --checkpoint");
  if (checkpoint == "best") {
    const std::string best = run.checkpoint_dir() + "/" + engine::kBestCheckpointName;
    SEGRUN_CHECK(path_exists(best), ConfigError,
                 best << ": not found (the run keeps one only under train.save_best = \"mIoU\", \"mAcc\" or \"aAcc\")");
    return {run.config_path(), best, source};
  }
  if (!checkpoint.empty()) return {run.config_path(), checkpoint, source};
  const std::vector<std::string> checkpoints = engine::checkpoints_newest_first(run.checkpoint_dir());
  SEGRUN_CHECK(!checkpoints.empty(), ConfigError,
               command << ": " << run.checkpoint_dir() << ": no iter_<n>.pt (the run saved none yet)");
  return {run.config_path(), checkpoints.front(), source, /*newest=*/true};
}

// The source's config with `overrides`, and this rank's log started; says which checkpoint a run
// folder's source chose (`doing`: "evaluating", "predicting with").
Config load_source_config(const EvalSource& source, const std::vector<std::string>& overrides, const char* doing,
                          MpiHolder& mpi) {
  Config config = load_config(source.config, overrides);
  init_rank_logging(mpi.context(), config.log.level);
  if (source.newest) log::info("{}: {} its newest checkpoint, {}", source.given, doing, source.checkpoint);
  return config;
}

// Where `eval` records its evaluation ("" for nowhere): --run-dir, else the checkpoint's own run.
// ConfigError for a --run-dir that is not a folder, or is a folder of the user's own files (their
// metrics.jsonl is never appended to); an empty one, or a run's results copied elsewhere (what
// `segrun table` reads as a run), may be written.
std::string eval_record_dir(const EvalCommand& cmd, const EvalSource& source) {
  if (cmd.no_record) return "";
  const std::string record_dir = cmd.run_dir.empty() ? run_dir_of_checkpoint(source.checkpoint) : cmd.run_dir;
  if (record_dir.empty()) return "";
  std::error_code ec;
  SEGRUN_CHECK(fs::is_directory(record_dir, ec), ConfigError, "--run-dir " << record_dir << ": not a directory");
  SEGRUN_CHECK(
      fs::is_empty(record_dir, ec) || RunFolder(record_dir).holds_run_files() || sweeps::is_run_folder(record_dir),
      ConfigError,
      "--run-dir " << record_dir
                   << ": not a segrun run folder (no status, overrides.json, checkpoint, rank log, nor "
                      "config.toml with metrics.jsonl or result.json); nothing is written there "
                      "(--no-record: only print the evaluation)");
  return record_dir;
}

int run_eval(const EvalCommand& cmd, MpiHolder& mpi) {
  const EvalSource source = eval_source("eval", cmd.config, cmd.checkpoint);
  std::vector<std::string> overrides = cmd.overrides;
  if (cmd.ms) overrides.push_back("eval.report_ms=true");
  const Config config = load_source_config(source, overrides, "evaluating", mpi);
  const auto& context = mpi.context();
  engine::EvalRequest request;
  request.save_pred_dir = cmd.save_pred;
  request.color = cmd.color;
  request.show_progress = true;
  request.multi_scale = config.eval.report_ms;
  request.confusion = !cmd.confusion.empty();
  if (request.confusion) require_new_file("--confusion", cmd.confusion);
  const std::string record_dir = eval_record_dir(cmd, source);
  auto result = engine::evaluate_checkpoint(config, context, source.checkpoint, request);
  if (context.is_root()) {
    const engine::EvalOutcome& outcome = result.outcome;
    nlohmann::ordered_json record = engine::eval_record_json(outcome, result.class_names);
    const std::string confusion_text =
        request.confusion ? write_confusion(cmd.confusion, outcome.confusion, result.class_names, record) : "";
    if (cmd.json) {
      std::cout << record.dump(2) << "\n";
    } else {
      print_evaluation(outcome, result.class_names);
      std::cout << confusion_text;
    }
    if (!cmd.run_dir.empty()) {
      record_evaluation(record_dir, source.checkpoint, config, result);
    } else if (!record_dir.empty()) {
      // Recording in the checkpoint's own run was not asked for: a failure (a full or read-only
      // disk) is reported, the printed evaluation stands.
      try {
        record_evaluation(record_dir, source.checkpoint, config, result);
      } catch (const std::exception& e) {
        log::warn("evaluation not recorded in {}: {}", record_dir, e.what());
      }
    }
  }
  return 0;
}

int run_predict(const PredictCommand& cmd, MpiHolder& mpi) {
  const EvalSource source = eval_source("predict", cmd.config, cmd.checkpoint);
  const Config config = load_source_config(source, cmd.overrides, "predicting with", mpi);
  const auto& context = mpi.context();
  engine::PredictRequest request;
  request.inputs = cmd.images;
  request.out_dir = cmd.out;
  request.multi_scale = cmd.ms;
  request.label_ids = cmd.label_ids;
  request.show_progress = true;
  const engine::PredictOutcome outcome = engine::predict_images(config, context, source.checkpoint, request);
  if (context.is_root())
    std::cout << "predict: " << outcome.images << " image" << (outcome.images == 1 ? "" : "s") << " -> " << cmd.out
              << " (<name>.png train ids, color/, overlay/" << (cmd.label_ids ? ", label_ids/" : "") << ") with "
              << source.checkpoint << " (iteration " << outcome.iteration << ")"
              << (cmd.ms ? ", multi-scale + flip" : "") << "; rank 0: " << outcome.rank_images << " in "
              << segrun::format("{:.1f}", outcome.seconds) << " s\n";
  return 0;
}

int run_metrics(const engine::MetricsCommandOptions& given) {
  const engine::MetricsCommandOptions options = engine::resolved_metrics_options(given);
  const bool with_confusion = !options.confusion_csv.empty();
  if (with_confusion) require_new_file("--confusion", options.confusion_csv);
  torch::Tensor confusion;
  const engine::SegMetrics metrics = engine::evaluate_label_dirs(options, with_confusion ? &confusion : nullptr);
  // Nothing counted is no score of 0 or NaN to print and exit 0 on: the flags do not fit the labels.
  SEGRUN_CHECK(metrics.pixels > 0, DataError,
               options.gt_dir << ": no ground-truth pixel is counted (every one is --ignore-index "
                              << options.ignore_index
                              << (options.reduce_zero_label ? ", or 0 under --reduce-zero-label" : "") << ")");
  nlohmann::ordered_json record = engine::metrics_to_json(metrics, options.class_names);
  std::string confusion_text;
  if (with_confusion) {
    std::vector<std::string> names = options.class_names;
    for (int c = static_cast<int>(names.size()); c < options.num_classes; ++c)
      names.push_back("class_" + std::to_string(c));
    confusion_text = write_confusion(options.confusion_csv, confusion, names, record);
  }
  if (options.json)
    std::cout << record.dump(2) << "\n";
  else
    std::cout << sweeps::format_class_table(class_table_of(metrics, options.class_names), sweeps::TableFormat::kText,
                                            true)
              << confusion_text;
  return 0;
}

int run_config(const ConfigCommand& cmd) {
  if (cmd.keys->count() == 0) {
    std::cout << to_toml(load_config(run_source(cmd.config, "").config_path, cmd.overrides));
    return 0;
  }
  const ReferenceFormat format = cmd.format == "md" ? ReferenceFormat::kMarkdown : ReferenceFormat::kText;
  if (format == ReferenceFormat::kMarkdown && cmd.keys_prefix.empty())
    std::cout << config_reference_page();  // docs/config.md
  else
    std::cout << format_key_reference(keys_with_prefix(cmd.keys_prefix), format);
  return 0;
}

struct RunOptions {
  TrainCommand train_command;
  EvalCommand eval_command;
  PredictCommand predict_command;
  engine::MetricsCommandOptions metrics_options;
  ConfigCommand config_command;
};

}  // namespace

void add_run_commands(CommandRegistry& registry) {
  auto options = std::make_shared<RunOptions>();  // shared by the actions, alive as long as they are
  RunOptions& s = *options;
  TrainCommand& train = s.train_command;
  CLI::App* train_command = registry.add("train", "train one run (on every rank of `segrun launch`, or alone)",
                                         [options](MpiHolder& mpi) { return run_train(options->train_command, mpi); });
  train_command->add_option("config", train.config, "experiment TOML, or a run folder (its config.toml)")->required();
  train_command->add_option("overrides", train.overrides, "key=value overrides, e.g. train.lr=1e-4");
  registry.set_runs_on_ranks(train_command);
  train_command->add_option("--run-dir", train.run_dir, "run directory (default: the run folder given, or runs/<name>)")
      ->check(non_empty());
  train_command->add_option("--resume", train.resume, "auto | checkpoint path")->check(non_empty());
  registry.set_preflight(train_command, [options] {
    const TrainPlan plan = plan_train(options->train_command);
    engine::check_train_request(plan.config, plan.request);
    engine::check_run_not_busy(plan.request.run_dir);
    // Before mpirun starts the ranks (each would fail on it, and the run would be marked failed).
    require_inputs(plan.config);
  });

  EvalCommand& eval = s.eval_command;
  CLI::App* eval_command = registry.add("eval", "evaluate a checkpoint (or a run folder's newest) on data.val_store",
                                        [options](MpiHolder& mpi) { return run_eval(options->eval_command, mpi); });
  registry.set_runs_on_ranks(eval_command);
  // What `launch` checks before mpirun starts (each rank would fail on it, with MPI's abort text).
  registry.set_preflight(eval_command, [options] {
    const EvalCommand& cmd = options->eval_command;
    const EvalSource source = eval_source("eval", cmd.config, cmd.checkpoint);
    load_config(source.config, cmd.overrides);
    if (!cmd.save_pred.empty())
      require_new_or_empty_folder("--save-pred", cmd.save_pred, "predictions go to a new or empty folder");
    if (!cmd.confusion.empty()) require_new_file("--confusion", cmd.confusion);
    eval_record_dir(cmd, source);
  });
  eval_command->add_option("config", eval.config, "experiment TOML, or a run folder (its config.toml)")->required();
  eval_command->add_option("overrides", eval.overrides, "key=value overrides");
  eval_command
      ->add_option("--checkpoint", eval.checkpoint,
                   "checkpoint .pt (default for a run folder: its newest; `best`: its checkpoints/best.pt)")
      ->check(non_empty());
  auto* save_pred = eval_command->add_option("--save-pred", eval.save_pred, "write predictions as PNG (train ids) here")
                        ->check(non_empty());
  eval_command
      ->add_flag(
          "--color", eval.color,
          "with --save-pred, also color/<name>.png in the dataset's palette and overlay/<name>.jpg over the image")
      ->needs(save_pred);
  eval_command->add_flag("--json", eval.json, "print JSON");
  eval_command->add_flag("--ms", eval.ms,
                         "also multi-scale + flip (eval.ms_scales, default 0.5..1.75; mmseg --aug-test): mIoU_ms");
  eval_command
      ->add_option("--run-dir", eval.run_dir,
                   "record the evaluation in this run directory (default: the run of <run>/checkpoints/iter_<n>.pt)")
      ->check(non_empty());
  eval_command->add_flag("--no-record", eval.no_record, "do not write metrics.jsonl / result.json of the run");
  eval_command
      ->add_option("--confusion", eval.confusion,
                   "write the confusion matrix (pixel counts, a row per true class) to this CSV file and "
                   "print the 10 most confused class pairs")
      ->check(non_empty());

  PredictCommand& predict = s.predict_command;
  CLI::App* predict_command =
      registry.add("predict", "a trained model on your own images: label PNGs, colour pictures and overlays",
                   [options](MpiHolder& mpi) { return run_predict(options->predict_command, mpi); });
  registry.set_runs_on_ranks(predict_command);
  registry.set_preflight(predict_command, [options] {
    const PredictCommand& cmd = options->predict_command;
    load_config(eval_source("predict", cmd.config, cmd.checkpoint).config, cmd.overrides);
    engine::list_predict_images(cmd.images);
    require_new_or_empty_folder("--out", cmd.out, "predictions go to a new or empty folder");
  });
  predict_command->add_option("config", predict.config, "experiment TOML, or a run folder (its config.toml)")
      ->required();
  predict_command->add_option("overrides", predict.overrides, "key=value overrides, e.g. eval.mode=\"slide\"");
  predict_command->add_option("--images", predict.images, "image files and folders of images (*.jpg, *.png, ...)")
      ->required();
  predict_command->add_option("--out", predict.out, "a new (or empty) folder for the predictions")
      ->required()
      ->check(non_empty());
  predict_command
      ->add_option("--checkpoint", predict.checkpoint,
                   "checkpoint .pt (default for a run folder: its newest; `best`: its checkpoints/best.pt)")
      ->check(non_empty());
  predict_command->add_flag("--ms", predict.ms, "multi-scale + flip (eval.ms_scales) instead of eval.scales");
  predict_command->add_flag("--label-ids", predict.label_ids,
                            "also label_ids/<name>.png in the dataset's own label values (Cityscapes label ids, for "
                            "its benchmark server and cityscapesScripts)");

  engine::MetricsCommandOptions& metrics = s.metrics_options;
  CLI::App* metrics_command = registry.add("metrics", "mIoU of prediction PNGs against ground-truth PNGs",
                                           [options](MpiHolder&) { return run_metrics(options->metrics_options); });
  metrics_command->add_option("--pred", metrics.pred_dir, "folder of predicted label PNGs")->required();
  metrics_command->add_option("--gt", metrics.gt_dir, "folder of ground-truth label PNGs")->required();
  metrics_command
      ->add_option("--layout", metrics.layout,
                   "the ground truth is this dataset's raw annotations as released (nested folders, "
                   "Cityscapes *_gtFine_labelIds.png, raw ids mapped to train ids, the dataset's class names)")
      ->check(CLI::IsMember(layout_names()));
  metrics_command->add_option("--num-classes", metrics.num_classes, "number of classes (required without --layout)")
      ->check(int_range(1, 255));
  metrics_command->add_option("--ignore-index", metrics.ignore_index, "ignored label value")
      ->capture_default_str()
      ->check(int_range(0, 255));
  metrics_command->add_flag("--reduce-zero-label", metrics.reduce_zero_label,
                            "ADE20K convention: GT 0 -> ignore, k -> k-1");
  metrics_command->add_flag("--json", metrics.json, "print JSON");
  metrics_command
      ->add_option("--confusion", metrics.confusion_csv,
                   "write the confusion matrix (pixel counts, a row per true class) to this CSV file and "
                   "print the 10 most confused class pairs")
      ->check(non_empty());

  ConfigCommand& config = s.config_command;
  CLI::App* config_command = registry.add(
      "config",
      "print the fully resolved config (every default written out); --keys: every key, its default and meaning",
      [options](MpiHolder&) { return run_config(options->config_command); });
  CLI::Option* config_file =
      config_command->add_option("config", config.config, "experiment TOML, or a run folder (its config.toml)");
  CLI::Option* overrides = config_command->add_option("overrides", config.overrides, "key=value overrides");
  CLI::Option* keys =
      config_command
          ->add_option("--keys", config.keys_prefix,
                       "print every config key instead (type, default, range, meaning), or those starting with PREFIX")
          ->option_text("[PREFIX]")
          ->expected(0, 1)
          ->excludes(config_file)
          ->excludes(overrides);
  config.keys = keys;
  config_command->add_option("--format", config.format, "of --keys: text | md (markdown: docs/config.md)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "md"}))
      ->needs(keys);
  // A config file is required unless --keys asks for the reference.
  config_command->callback([config_file, keys] {
    if (config_file->count() == 0 && keys->count() == 0) throw CLI::RequiredError(config_file->get_name());
  });
}

}  // namespace segrun::launcher
