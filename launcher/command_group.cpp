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

CLI::Validator int_range(int64_t min, int64_t max) {
  const std::string low = std::to_string(min), high = std::to_string(max);
  return CLI::Validator(
      [min, max, low, high](std::string& input) {
        int64_t value = 0;
        if (!CLI::detail::lexical_cast(input, value) || value < min || value > max)
          return "Value " + input + " not in range " + low + " to " + high;
        return std::string();
      },
      "INT in [" + low + " - " + high + "]");
}

}  // namespace segrun::launcher
