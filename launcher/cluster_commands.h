#pragma once
// The Slurm subcommands of the segrun CLI, a CommandGroup (launcher/command_group.h):
//   segrun submit CONFIG [k=v...] | SPEC --on slurm [resource flags] [--dry-run]
//   segrun status RUN_DIR          a run's state merged with its Slurm job, job id, log
//   segrun cancel SPEC|RUN_DIR     scancel the jobs of a sweep's runs (or of one run)
// What they do lives in sweeps/slurm_jobs.h; the resource flags bind to its SlurmOverrides. None
// of them starts MPI in this process.

#include <memory>

#include "launcher/command_group.h"

namespace CLI {
class App;
}

namespace segrun::launcher {

class ClusterCommands final : public CommandGroup {
 public:
  explicit ClusterCommands(CLI::App& app);
  ~ClusterCommands() override;

  bool selected() const override;
  int run(MpiHolder& mpi) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace segrun::launcher
