#pragma once
// A group of segrun subcommands (sweep/table, submit/status/cancel, model info). The constructor
// registers the group's subcommands on the CLI11 app; their options live as long as the object,
// which main keeps on its stack. After parsing, selected() tells whether the command line chose
// one of them and run() executes it and returns the exit code; errors are thrown and reported by
// main's single catch. main dispatches to the first selected group, so a new group is one more
// object in its list.

namespace segrun::launcher {

class CommandGroup {
 public:
  virtual ~CommandGroup() = default;
  virtual bool selected() const = 0;
  virtual int run() = 0;

 protected:
  CommandGroup() = default;
  CommandGroup(const CommandGroup&) = delete;
  CommandGroup& operator=(const CommandGroup&) = delete;
};

}  // namespace segrun::launcher
