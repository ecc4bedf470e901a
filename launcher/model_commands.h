#pragma once
// The model subcommands of the segrun CLI: `model info CONFIG [k=v ...] [--input HxW]
// [--format text|json]` builds the model a config describes (random weights: model.pretrained
// is not read) for the classes of data.layout, counts its parameters (trainable, frozen,
// buffers; per top-level submodule) and the FLOPs of one inference forward pass of a
// 1 x 3 x H x W image (H x W = data.crop unless --input) with fvcore's rules
// (models/flop_counter.h: one multiply-add = one FLOP), and prints a table or JSON.
// ModelCommands registers the subcommands on the CLI11 app (its options live as long as the
// object, which main keeps on its stack); after parsing, selected() tells whether one was chosen
// and run() executes it and returns the exit code (errors are thrown and reported by main's
// single catch). No MPI: the model is built without a communicator (syncbn = plain BN).

#include <memory>

namespace CLI {
class App;
}

namespace segrun::launcher {

class ModelCommands {
 public:
  explicit ModelCommands(CLI::App& app);
  ~ModelCommands();
  ModelCommands(const ModelCommands&) = delete;
  ModelCommands& operator=(const ModelCommands&) = delete;

  bool selected() const;
  int run();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace segrun::launcher
