#pragma once
// The sweep and table subcommands of the segrun CLI: `sweep plan|run|status SPEC` and
// `table RUNS_DIR|SPEC`, a CommandGroup (launcher/command_group.h). None of them starts MPI in
// this process: `sweep run` starts mpirun jobs through the cluster layer.

#include <memory>

#include "launcher/command_group.h"

namespace CLI {
class App;
}

namespace segrun::launcher {

class SweepCommands final : public CommandGroup {
 public:
  explicit SweepCommands(CLI::App& app);
  ~SweepCommands() override;

  bool selected() const override;
  int run(MpiHolder& mpi) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace segrun::launcher
