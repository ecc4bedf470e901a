#include "launcher/command_group.h"

#include <CLI/CLI.hpp>

namespace segrun::launcher {

CLI::App* CommandRegistry::add(const std::string& name, const std::string& description, CommandAction action,
                               CLI::App* parent) {
  CLI::App* command = (parent ? parent : &app_)->add_subcommand(name, description);
  commands_.emplace_back(command, std::move(action));
  return command;
}

bool CommandRegistry::run_chosen(MpiHolder& mpi, int* exit_code) const {
  for (const auto& [command, action] : commands_) {
    if (command->parsed()) {
      *exit_code = action(mpi);
      return true;
    }
  }
  return false;
}

}  // namespace segrun::launcher
