#pragma once
// The segrun subcommands. Each takes a plain options struct filled by the CLI (main.cpp) and
// returns the process exit code; errors are thrown (segrun exceptions) and reported by main.
// Rank-level commands (train, eval, data pack) run on every rank of an MPI world — alone they
// form a singleton world — and get their MpiSession from `mpi`, which main owns so that its
// single catch can abort the whole world.

#include <memory>
#include <string>
#include <vector>

#include "dist/rank_context.h"

namespace segrun::launcher {

// Creates the MPI session on first use (rank-level commands only).
class MpiHolder {
 public:
  MpiHolder(int* argc, char*** argv) : argc_(argc), argv_(argv) {}
  const dist::RankContext& context();
  bool active() const { return session_ != nullptr; }
  int world_size() const { return session_ ? session_->context().world_size : 1; }
  void finalize() { session_.reset(); }

 private:
  int* argc_;
  char*** argv_;
  std::unique_ptr<dist::MpiSession> session_;
};

struct SynthCommand {
  std::string layout = "ade20k";
  std::string out;
  int train = 64;
  int val = 16;
  std::string size = "128x128";
  uint64_t seed = 0;
};
int run_synth(const SynthCommand& cmd);

struct PackCommand {
  std::string layout = "ade20k";
  std::string root;
  std::string split;
  std::string out;
  int shards = 1;
};
int run_pack(const PackCommand& cmd, MpiHolder& mpi);

struct InspectCommand {
  std::string store;
  bool json = false;
  bool verify = true;
};
int run_inspect(const InspectCommand& cmd);

struct TrainCommand {
  std::string config;
  std::vector<std::string> overrides;
  std::string run_dir;   // default: runs/<config name>
  std::string resume;    // "", "auto" or a checkpoint path
};
int run_train(const TrainCommand& cmd, MpiHolder& mpi);

struct EvalCommand {
  std::string config;
  std::vector<std::string> overrides;
  std::string checkpoint;
  std::string save_pred;
  bool json = false;
  bool ms = false;          // --ms: also multi-scale + flip (eval.report_ms = true)
  std::string run_dir;      // --run-dir: record the evaluation there (default: the checkpoint's run)
  bool no_record = false;   // --no-record: print only
};
int run_eval(const EvalCommand& cmd, MpiHolder& mpi);

struct MetricsCommand {
  std::string pred_dir;
  std::string gt_dir;
  int num_classes = 0;
  int ignore_index = 255;
  bool reduce_zero_label = false;
  bool json = false;
};
int run_metrics(const MetricsCommand& cmd);

struct LaunchCommand {
  int ranks = 1;
  std::string hosts;
  std::vector<std::string> command;  // segrun subcommand and its arguments
  bool dry_run = false;
};
int run_launch(const LaunchCommand& cmd);
// The signal a launcher forwards as "checkpoint and stop" to the ranks of `command`: for `train
// CONFIG [k=v...]`, the one its cluster.slurm.signal asks for (cluster::local_stop_signal), else
// SIGUSR1. A config that does not load is left for the ranks to report.
int launched_stop_signal(const std::vector<std::string>& command);

struct ConfigCommand {
  std::string config;
  std::vector<std::string> overrides;
};
int run_config(const ConfigCommand& cmd);

struct DemoCommand {
  std::string dir = "segrun-demo";
  int ranks = 2;
  int64_t iters = 0;  // 0 = the embedded default
};
int run_demo(const DemoCommand& cmd);

// Reads result.json of a run: (mIoU, number of classes with a defined IoU).
std::pair<double, int> read_result_headline(const std::string& result_json_path);

}  // namespace segrun::launcher
