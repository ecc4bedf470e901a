#pragma once
// The multi-rank subcommands of the segrun CLI, a CommandGroup (launcher/command_group.h):
//   segrun launch -n N [--hosts h:s,...] [--dry-run] -- SUBCOMMAND ARGS   (mpirun; inside a Slurm
//                allocation srun, cluster/slurm_env.h)
//   segrun demo [--dir D] [--ranks N] [--iters K]   (synthesize, pack, train, print mIoU)
// A launcher forwards a Ctrl-C or SIGTERM to the ranks as their "checkpoint and stop" signal
// (launched_stop_signal) and returns their exit code.

#include <memory>
#include <string>
#include <vector>

#include "launcher/command_group.h"

namespace CLI {
class App;
}

namespace segrun::launcher {

class LaunchCommands final : public CommandGroup {
 public:
  explicit LaunchCommands(CLI::App& app);
  ~LaunchCommands() override;

  bool selected() const override;
  int run(MpiHolder& mpi) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The mpirun command that runs `segrun <args>` (this very executable) on `ranks` ranks.
std::vector<std::string> segrun_on_ranks(int ranks, const std::string& hosts, const std::vector<std::string>& args);

// The signal a launcher forwards as "checkpoint and stop" to the ranks of `command`: for `train
// CONFIG [k=v...]`, the one its cluster.slurm.signal asks for (cluster::local_stop_signal), else
// SIGUSR1. A config that does not load is left for the ranks to report.
int launched_stop_signal(const std::vector<std::string>& command);

}  // namespace segrun::launcher
