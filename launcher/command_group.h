#pragma once
// The segrun subcommands, all registered one way: a file per group adds its subcommands to a
// CommandRegistry, each with the action that runs it, binding the options to the libraries'
// option structs where one exists (or to a struct the group's actions share) and validating them
// with CLI11 checks. After parsing, main asks the registry to run the chosen subcommand's action;
// actions return the exit code and throw segrun errors, which main's single catch reports.
// Rank-level actions (train, eval, data pack) get their MPI session from `mpi`
// (launcher/mpi_holder.h), which main owns so that its catch can abort the whole world.
// A new group is one more add_*_commands function, called by main.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace CLI {
class App;
class Validator;
}

namespace segrun::launcher {

class MpiHolder;
using CommandAction = std::function<int(MpiHolder& mpi)>;

class CommandRegistry {
 public:
  explicit CommandRegistry(CLI::App& app) : app_(app) {}
  CLI::App& app() { return app_; }

  // Adds subcommand `name` under `parent` (the app itself when null); `action` runs when the
  // command line chooses it.
  CLI::App* add(const std::string& name, const std::string& description, CommandAction action,
                CLI::App* parent = nullptr);

  // Runs the chosen subcommand's action into *exit_code; false when none was chosen.
  bool run_chosen(MpiHolder& mpi, int* exit_code) const;

 private:
  CLI::App& app_;
  std::vector<std::pair<CLI::App*, CommandAction>> commands_;
};

// The check for an integer option in [min, max] (inclusive), used instead of CLI::Range so that its
// message is segrun's on every CLI11: "Value 0 not in range 1 to 255" (after the option's name).
// CLI11 2.4 (Ubuntu 24.04, where GPU machines build) words its Range "not in range [1 - 255]".
CLI::Validator int_range(int64_t min, int64_t max);

// data synth | pack | inspect (launcher/data_commands.cpp)
void add_data_commands(CommandRegistry& registry);
// train, eval, metrics, config (launcher/run_commands.cpp)
void add_run_commands(CommandRegistry& registry);
// launch, demo (launcher/launch_commands.cpp)
void add_launch_commands(CommandRegistry& registry);
// sweep plan | run | status, table, report (launcher/sweep_commands.cpp)
void add_sweep_commands(CommandRegistry& registry);
// submit, status, cancel on Slurm (launcher/cluster_commands.cpp)
void add_cluster_commands(CommandRegistry& registry);
// model info (launcher/model_commands.cpp)
void add_model_commands(CommandRegistry& registry);

}  // namespace segrun::launcher
