#pragma once
// The segrun subcommands, all registered one way: a file per group adds its subcommands to a
// CommandRegistry, each with the action that runs it, binding the options to the libraries'
// option structs where one exists (or to a struct the group's actions share) and validating them
// with CLI11 checks. After parsing, main asks the registry to run the chosen subcommand's action;
// actions return the exit code and throw segrun errors, which main's single catch reports.
// Rank-level actions (train, eval, data pack) get their MPI session from `mpi`
// (launcher/mpi_holder.h), which main owns so that its catch can abort the whole world.
// A new group is one more add_*_commands function, called by add_segrun_commands.
// A command line CLI11 rejects is reported as one line (usage_error_message) with exit code 2,
// like a config error: "unknown command 'trian' (did you mean 'train'?)",
// "launch: --ranks: Value 0 not in range 1 to 65536 (segrun launch --help)".

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace CLI {
class App;
class ParseError;
class Validator;
}  // namespace CLI

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

  // `check` runs, after parsing, the checks of `command` that need no MPI and write nothing (a
  // train's config and run folder, a pack's --out); its action makes them again on every rank.
  void set_preflight(CLI::App* command, std::function<void()> check);
  // The chosen subcommand's preflight, if it has one.
  void preflight_chosen() const;

  // `command` runs on the ranks of `segrun launch` (it splits its work over them: train, eval,
  // predict, data pack). Any other command refuses to be launched: it would run N times over, and
  // one that starts ranks itself (launch, demo, sweep run) would start mpirun inside mpirun.
  void set_runs_on_ranks(CLI::App* command);
  // ConfigError naming the chosen subcommand unless it runs on ranks.
  void require_chosen_runs_on_ranks() const;

 private:
  CLI::App& app_;
  std::vector<std::pair<CLI::App*, CommandAction>> commands_;
  std::vector<std::pair<CLI::App*, std::function<void()>>> preflights_;
  std::vector<CLI::App*> on_ranks_;
};

// The check for an integer option in [min, max] (inclusive), used instead of CLI::Range so that its
// message is segrun's on every CLI11: "Value 0 not in range 1 to 255", "'two' is not a whole
// number" (after the option's name).
// CLI11 2.4 (Ubuntu 24.04, where GPU machines build) words its Range "not in range [1 - 255]".
CLI::Validator int_range(int64_t min, int64_t max);

// The check for an option whose empty value would pass for "not given" (--run-dir "", --resume ""):
// "must not be empty", after the option's name.
CLI::Validator non_empty();

// The whole segrun command line on the registry's app: description, --version, one required
// subcommand and every group below. main, check_command_line and the tests build it this one way.
void add_segrun_commands(CommandRegistry& registry);

// The one line for a command line that `app` (built by add_segrun_commands) rejected with `error`
// while parsing `args` (the words after the program name, in order): an unknown or missing
// subcommand names the choices (and the nearest one to a misspelling); any other error is CLI11's
// message after the subcommands chosen so far, with the --help to read.
std::string usage_error_message(const CLI::App& app, const std::vector<std::string>& args,
                                const CLI::ParseError& error);

// Parses `args` as segrun would (nothing runs) and throws ConfigError with usage_error_message's
// line when segrun would reject them; a request for --help passes. `launch` checks the command it
// is about to start on every rank, so that a typo is one line before mpirun rather than one per rank.
void check_command_line(const std::vector<std::string>& args);
// check_command_line, then the chosen subcommand's preflight: what `launch` runs before mpirun, so
// that a train into a folder it must not write or a pack onto an existing store is one line. A
// subcommand that does not run on ranks (CommandRegistry::set_runs_on_ranks) is refused here.
// A request for --help (or --version) is answered here, on stdout, and returns false: there is
// nothing to launch (on N ranks it was printed N times).
bool check_before_launch(const std::vector<std::string>& args);

// data synth | pack | inspect (launcher/data_commands.cpp)
void add_data_commands(CommandRegistry& registry);
// train, eval, predict, metrics, config (launcher/run_commands.cpp)
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
