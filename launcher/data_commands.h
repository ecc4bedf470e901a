#pragma once
// The dataset subcommands of the segrun CLI, a CommandGroup (launcher/command_group.h):
//   segrun data synth --out DIR [--layout ade20k|cityscapes] [--train N] [--val N] [--size HxW]
//   segrun data pack --root DIR --split S --out STORE [--shards N]   (on every rank of `launch`)
//   segrun data inspect STORE [--json] [--no-verify]
// synth and pack bind straight to data::SynthOptions and data::PackOptions; inspect exits 1
// when a record fails its CRC.

#include <memory>

#include "launcher/command_group.h"

namespace CLI {
class App;
}

namespace segrun::launcher {

class DataCommands final : public CommandGroup {
 public:
  explicit DataCommands(CLI::App& app);
  ~DataCommands() override;

  bool selected() const override;
  int run(MpiHolder& mpi) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace segrun::launcher
