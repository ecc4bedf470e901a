// The segrun executable: CLI (CLI11) -> subcommands. The one catch of the program lives here:
// an error is printed as one line naming what is wrong, and in a multi-rank world the whole
// world is aborted so that no rank waits forever for a dead peer.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <initializer_list>
#include <iostream>

#include "build_config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/run_folder.h"
#include "launcher/cluster_commands.h"
#include "launcher/commands.h"
#include "launcher/model_commands.h"
#include "launcher/sweep_commands.h"

namespace {

using namespace segrun;
using namespace segrun::launcher;

// Rank of this process as the MPI launcher announced it (known before MPI_Init).
int announced_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return 0;
}

int exit_code_for(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) return kExitConfigError;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  log::LogOptions early;
  early.rank = announced_rank();
  log::init_logging(early);

  CLI::App app{"segrun: train CLIP-based scene parsers on MPI ranks, from raw datasets to mIoU tables"};
  app.set_version_flag("--version", std::string("segrun ") + SEGRUN_VERSION);
  app.require_subcommand(1);

  // data synth | pack | inspect
  auto* data = app.add_subcommand("data", "dataset tools: synth, pack, inspect");
  data->require_subcommand(1);
  SynthCommand synth;
  auto* synth_cmd = data->add_subcommand("synth", "write a synthetic, learnable dataset in the real ADE20K/Cityscapes layout");
  synth_cmd->add_option("--layout", synth.layout, "ade20k | cityscapes")->capture_default_str();
  synth_cmd->add_option("--out", synth.out, "output folder")->required();
  synth_cmd->add_option("--train", synth.train, "training images")->capture_default_str();
  synth_cmd->add_option("--val", synth.val, "validation images")->capture_default_str();
  synth_cmd->add_option("--size", synth.size, "image size HxW")->capture_default_str();
  synth_cmd->add_option("--seed", synth.seed, "random seed")->capture_default_str();

  PackCommand pack;
  auto* pack_cmd = data->add_subcommand("pack", "pack a real-layout folder into a sharded HDF5 store (runs on every rank of `segrun launch`)");
  pack_cmd->add_option("--layout", pack.layout, "ade20k | cityscapes")->capture_default_str();
  pack_cmd->add_option("--root", pack.root, "dataset folder")->required();
  pack_cmd->add_option("--split", pack.split, "ade20k: training | validation; cityscapes: train | val")->required();
  pack_cmd->add_option("--out", pack.out, "store folder to create (must not exist)")->required();
  pack_cmd->add_option("--shards", pack.shards, "number of shard files")->capture_default_str();

  InspectCommand inspect;
  bool no_verify = false;
  auto* inspect_cmd = data->add_subcommand("inspect", "summarize a store and check every record's CRC");
  inspect_cmd->add_option("store", inspect.store, "store folder or its manifest.json")->required();
  inspect_cmd->add_flag("--json", inspect.json, "print JSON");
  inspect_cmd->add_flag("--no-verify", no_verify, "skip the CRC check of every record");

  TrainCommand train;
  auto* train_cmd = app.add_subcommand("train", "train one run (on every rank of `segrun launch`, or alone)");
  train_cmd->add_option("config", train.config, "experiment TOML")->required();
  train_cmd->add_option("overrides", train.overrides, "key=value overrides, e.g. train.lr=1e-4");
  train_cmd->add_option("--run-dir", train.run_dir, "run directory (default runs/<name>)");
  train_cmd->add_option("--resume", train.resume, "auto | checkpoint path");

  EvalCommand eval;
  auto* eval_cmd = app.add_subcommand("eval", "evaluate a checkpoint on data.val_store");
  eval_cmd->add_option("config", eval.config, "experiment TOML")->required();
  eval_cmd->add_option("overrides", eval.overrides, "key=value overrides");
  eval_cmd->add_option("--checkpoint", eval.checkpoint, "checkpoint .pt")->required();
  eval_cmd->add_option("--save-pred", eval.save_pred, "write predictions as PNG (train ids) here");
  eval_cmd->add_flag("--json", eval.json, "print JSON");
  eval_cmd->add_flag("--ms", eval.ms, "also multi-scale + flip (eval.ms_scales, default 0.5..1.75; mmseg --aug-test): mIoU_ms");
  eval_cmd->add_option("--run-dir", eval.run_dir, "record the evaluation in this run directory (default: the run of <run>/checkpoints/iter_<n>.pt)");
  eval_cmd->add_flag("--no-record", eval.no_record, "do not write metrics.jsonl / result.json of the run");

  MetricsCommand metrics;
  auto* metrics_cmd = app.add_subcommand("metrics", "mIoU of prediction PNGs against ground-truth PNGs");
  metrics_cmd->add_option("--pred", metrics.pred_dir, "folder of predicted label PNGs")->required();
  metrics_cmd->add_option("--gt", metrics.gt_dir, "folder of ground-truth label PNGs")->required();
  metrics_cmd->add_option("--num-classes", metrics.num_classes, "number of classes")->required();
  metrics_cmd->add_option("--ignore-index", metrics.ignore_index, "ignored label value")->capture_default_str();
  metrics_cmd->add_flag("--reduce-zero-label", metrics.reduce_zero_label, "ADE20K convention: GT 0 -> ignore, k -> k-1");
  metrics_cmd->add_flag("--json", metrics.json, "print JSON");

  LaunchCommand launch;
  auto* launch_cmd = app.add_subcommand("launch", "run a segrun subcommand on N MPI ranks: segrun launch -n 2 -- train cfg.toml");
  launch_cmd->add_option("-n,--ranks", launch.ranks, "number of ranks")->required()->check(CLI::Range(1, 65536));
  launch_cmd->add_option("--hosts", launch.hosts, "host:slots,host:slots (default: this machine)");
  launch_cmd->add_flag("--dry-run", launch.dry_run, "print the mpirun command instead of running it");
  launch_cmd->add_option("command", launch.command, "the segrun subcommand and its arguments")->required();
  launch_cmd->positionals_at_end(true);

  ConfigCommand config;
  auto* config_cmd = app.add_subcommand("config", "print the fully resolved config (every default written out)");
  config_cmd->add_option("config", config.config, "experiment TOML")->required();
  config_cmd->add_option("overrides", config.overrides, "key=value overrides");

  DemoCommand demo;
  auto* demo_cmd = app.add_subcommand("demo", "synthesize ADE20K-layout data, pack it, train the tiny baseline on 2 ranks, print mIoU");
  demo_cmd->add_option("--dir", demo.dir, "working folder")->capture_default_str();
  demo_cmd->add_option("--ranks", demo.ranks, "ranks")->capture_default_str()->check(CLI::Range(1, 64));
  demo_cmd->add_option("--iters", demo.iters, "override the training iterations");

  SweepCommands sweep_commands(app);  // sweep plan | run | status, table
  ClusterCommands cluster_commands(app);  // submit, status, cancel (Slurm)
  ModelCommands model_commands(app);  // model info

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  MpiHolder mpi(&argc, &argv);
  try {
    int code = 0;
    if (*synth_cmd) code = run_synth(synth);
    else if (*pack_cmd) code = run_pack(pack, mpi);
    else if (*inspect_cmd) {
      inspect.verify = !no_verify;
      code = run_inspect(inspect);
    } else if (*train_cmd) code = run_train(train, mpi);
    else if (*eval_cmd) code = run_eval(eval, mpi);
    else if (*metrics_cmd) code = run_metrics(metrics);
    else if (*launch_cmd) code = launch_in_allocation(launch, &code) ? code : run_launch(launch);
    else if (*config_cmd) code = run_config(config);
    else if (*demo_cmd) code = run_demo(demo);
    else {
      for (CommandGroup* group : std::initializer_list<CommandGroup*>{&sweep_commands, &cluster_commands,
                                                                      &model_commands}) {
        if (group->selected()) {
          code = group->run();
          break;
        }
      }
    }
    log::flush();
    mpi.finalize();
    return code;
  } catch (const std::exception& e) {
    const int code = exit_code_for(e);
    const bool multi_rank = mpi.active() && mpi.world_size() > 1;
    const int rank = mpi.active() ? mpi.context().world_rank : announced_rank();
    // Config errors are the same on every rank: rank 0 reports them.
    if (rank == 0 || !dynamic_cast<const ConfigError*>(&e)) {
      std::string prefix = "segrun: error: ";
      if (rank != 0 || multi_rank) prefix = "segrun: error on rank " + std::to_string(rank) + ": ";
      // One line: library errors (e.g. LibTorch's) may append a backtrace after the message.
      std::string message = e.what();
      message = message.substr(0, message.find('\n'));
      std::cerr << prefix << message << std::endl;
    }
    log::flush();
    if (multi_rank) dist::MpiSession::abort_world(code);
    mpi.finalize();
    return code;
  }
}
