#pragma once
// The sweep and table subcommands of the segrun CLI: `sweep plan|run|status SPEC` and
// `table RUNS_DIR|SPEC`. SweepCommands registers them on the CLI11 app (its options live as
// long as the object, which main keeps on its stack); after parsing, selected() tells whether
// one of them was chosen and run() executes it and returns the exit code (errors are thrown and
// reported by main's single catch). None of them starts MPI in this process: `sweep run` starts
// mpirun jobs through the cluster layer.

#include <memory>

namespace CLI {
class App;
}

namespace segrun::launcher {

class SweepCommands {
 public:
  explicit SweepCommands(CLI::App& app);
  ~SweepCommands();
  SweepCommands(const SweepCommands&) = delete;
  SweepCommands& operator=(const SweepCommands&) = delete;

  bool selected() const;
  int run();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace segrun::launcher
