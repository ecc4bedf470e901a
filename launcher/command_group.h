#pragma once
// A group of segrun subcommands: data (synth, pack, inspect), run (train, eval, metrics, config),
// launch (launch, demo), sweep/table, submit/status/cancel, model info. Every subcommand is
// registered this one way: the constructor adds the group's subcommands to the CLI11 app, binding
// their options to the libraries' option structs where one exists and validating them with CLI11
// checks; the options live as long as the object, which main keeps on its stack. After parsing,
// selected() tells whether the command line chose one of them and run() executes it and returns
// the exit code; errors are thrown and reported by main's single catch. Rank-level commands
// (train, eval, data pack) get their MPI session from `mpi` (launcher/mpi_holder.h), which main
// owns so that its catch can abort the whole world. main dispatches to the first selected group,
// so a new group is one more object in its list.

namespace segrun::launcher {

class MpiHolder;

class CommandGroup {
 public:
  virtual ~CommandGroup() = default;
  virtual bool selected() const = 0;
  virtual int run(MpiHolder& mpi) = 0;

 protected:
  CommandGroup() = default;
  CommandGroup(const CommandGroup&) = delete;
  CommandGroup& operator=(const CommandGroup&) = delete;
};

}  // namespace segrun::launcher
