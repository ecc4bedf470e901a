#pragma once
// The model subcommands of the segrun CLI: `model info CONFIG [k=v ...] [--input HxW]
// [--format text|json]` builds the model a config describes (random weights: model.pretrained
// is not read) for the classes of data.layout, counts its parameters (trainable, frozen,
// buffers; per top-level submodule) and the FLOPs of one inference forward pass of a
// 1 x 3 x H x W image (H x W = data.crop unless --input) with fvcore's rules
// (models/flop_counter.h: one multiply-add = one FLOP), and prints a table or JSON.
// A CommandGroup (launcher/command_group.h). No MPI: the model is built without a communicator
// (syncbn = plain BN).

#include <memory>

#include "launcher/command_group.h"

namespace CLI {
class App;
}

namespace segrun::launcher {

class ModelCommands final : public CommandGroup {
 public:
  explicit ModelCommands(CLI::App& app);
  ~ModelCommands() override;

  bool selected() const override;
  int run(MpiHolder& mpi) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace segrun::launcher
