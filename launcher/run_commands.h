#pragma once
// The run subcommands of the segrun CLI, a CommandGroup (launcher/command_group.h):
//   segrun train CONFIG [k=v...] [--run-dir D] [--resume auto|PATH]  (on every rank of `launch`;
//                exit 75 when stopped by a signal after checkpointing)
//   segrun eval CONFIG [k=v...] --checkpoint PT [--ms] [--save-pred DIR] [--json] [--run-dir D]
//   segrun metrics --pred DIR --gt DIR --num-classes K [...]   (binds engine::MetricsCommandOptions)
//   segrun config CONFIG [k=v...]                                (the resolved config as TOML)

#include <memory>

#include "launcher/command_group.h"

namespace CLI {
class App;
}

namespace segrun::launcher {

class RunCommands final : public CommandGroup {
 public:
  explicit RunCommands(CLI::App& app);
  ~RunCommands() override;

  bool selected() const override;
  int run(MpiHolder& mpi) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace segrun::launcher
