#include "launcher/command_group.h"

#include <CLI/CLI.hpp>

#include "build_config.h"
#include "core/error.h"
#include "core/format.h"
#include "core/spelling.h"

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

void CommandRegistry::set_preflight(CLI::App* command, std::function<void()> check) {
  preflights_.emplace_back(command, std::move(check));
}

void CommandRegistry::preflight_chosen() const {
  for (const auto& [command, check] : preflights_)
    if (command->parsed()) check();
}

namespace {

// The names of the subcommands `app`'s command line chose ("data pack": {"data", "pack"}),
// outermost first; *innermost is the last of them (`app` itself when none was chosen).
std::vector<std::string> chosen_path(const CLI::App& app, const CLI::App** innermost = nullptr) {
  std::vector<std::string> path;
  const CLI::App* chosen = &app;
  for (auto subs = app.get_subcommands(); !subs.empty(); subs = chosen->get_subcommands()) {
    chosen = subs.front();
    path.push_back(chosen->get_name());
  }
  if (innermost != nullptr) *innermost = chosen;
  return path;
}

}  // namespace

void CommandRegistry::set_runs_on_ranks(CLI::App* command) { on_ranks_.push_back(command); }

void CommandRegistry::require_chosen_runs_on_ranks() const {
  for (const CLI::App* command : on_ranks_)
    if (command->parsed()) return;
  std::vector<std::string> on_ranks;
  for (const CLI::App* command : on_ranks_) {
    const CLI::App* parent = command->get_parent();
    on_ranks.push_back(parent != nullptr && parent != &app_ ? parent->get_name() + " " + command->get_name()
                                                            : command->get_name());
  }
  throw ConfigError("launch: '" + join(chosen_path(app_), " ") +
                    "' does not run on ranks; run it without segrun launch (launch starts " + join(on_ranks, ", ") +
                    ")");
}

void add_segrun_commands(CommandRegistry& registry) {
  CLI::App& app = registry.app();
  app.name("segrun");  // "Usage: segrun train ...", not the path it was started by
  app.description("segrun: train CLIP-based scene parsers on MPI ranks, from raw datasets to mIoU tables");
  app.set_version_flag("--version", std::string("segrun ") + SEGRUN_VERSION);
  app.require_subcommand(1);
  add_data_commands(registry);     // data synth | pack | inspect
  add_run_commands(registry);      // train, eval, metrics, config
  add_launch_commands(registry);   // launch, demo
  add_sweep_commands(registry);    // sweep plan | run | status, table, report
  add_cluster_commands(registry);  // submit, status, cancel (Slurm)
  add_model_commands(registry);    // model info
}

namespace {

// "unknown option '--imgs' (did you mean '--images'?)" for the first argument `command` did not
// know that looks like an option; empty when there is none.
std::string unknown_option_message(const CLI::App& command) {
  for (const std::string& arg : command.remaining()) {
    if (arg.size() < 2 || arg[0] != '-' || arg == "--") continue;
    const std::string word = arg.substr(0, arg.find('='));
    std::vector<std::string> names;
    for (const CLI::Option* option : command.get_options()) {
      for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
      for (const std::string& name : option->get_snames()) names.push_back("-" + name);
    }
    // A one-letter option is too short to guess from.
    const std::string meant = word.rfind("--", 0) == 0 ? likely_meant(word, names) : std::string();
    if (!meant.empty()) return "unknown option '" + word + "' (did you mean '" + meant + "'?)";
    return "unknown option '" + word + "'";
  }
  return {};
}

}  // namespace

std::string usage_error_message(const CLI::App& app, const std::vector<std::string>& args,
                                const CLI::ParseError& error) {
  // The subcommands chosen before the parser stopped ("data pack"), in the order given.
  const CLI::App* chosen = nullptr;
  const std::vector<std::string> path = chosen_path(app, &chosen);
  const std::string command = join(path, " ");
  const auto with_help = [&command](const std::string& message) {
    if (command.empty()) return message + " (segrun --help)";
    return command + ": " + message + " (segrun " + command + " --help)";
  };
  // An unknown option is the mistake to name, even where CLI11 first found a required one
  // missing (`predict --imgs x` lacks --images because --imgs was misspelt).
  std::string unknown;
  if (const std::string here = unknown_option_message(*chosen); !here.empty())
    unknown = with_help(here);
  else if (const std::string before = unknown_option_message(app); !before.empty())  // `segrun --x train`
    unknown = before + " (segrun --help)";

  // Whatever CLI11 reported first (a missing subcommand, or the unknown word as an extra argument:
  // versions differ), a group without its subcommand is reported as such.
  const bool lacks_subcommand = chosen->get_require_subcommand_min() > 0 && chosen->get_subcommands().empty();
  if (!lacks_subcommand) return unknown.empty() ? with_help(error.what()) : unknown;

  std::vector<std::string> choices;
  for (const CLI::App* sub : chosen->get_subcommands([](const CLI::App*) { return true; }))
    choices.push_back(sub->get_name());
  // The word where a subcommand was expected: the first one that is neither an option nor one of
  // the chosen subcommands' names.
  std::string word;
  size_t matched = 0;
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (matched < path.size() && arg == path[matched]) {
      ++matched;
    } else if (matched == path.size() && arg.rfind('-', 0) != 0) {
      word = arg;
      break;
    }
  }
  const std::string what = command.empty() ? "command" : "'" + command + "' subcommand";
  if (word.empty()) return unknown.empty() ? "a " + what + " is required: one of " + join(choices, ", ") : unknown;
  const std::string meant = likely_meant(word, choices);
  if (!meant.empty()) return "unknown " + what + " '" + word + "' (did you mean '" + meant + "'?)";
  return "unknown " + what + " '" + word + "' (one of " + join(choices, ", ") + ")";
}

namespace {

// Parses `args` on `registry`'s app; false for --help or --version (nothing to check further),
// which it prints when `answer_help`.
bool parse_command_line(CommandRegistry& registry, const std::vector<std::string>& args, bool answer_help = false) {
  CLI::App& app = registry.app();
  add_segrun_commands(registry);
  try {
    app.parse(std::vector<std::string>(args.rbegin(), args.rend()));  // CLI11 takes them reversed
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {  // --help, --version
      if (answer_help) app.exit(e);
      return false;
    }
    throw ConfigError(usage_error_message(app, args, e));
  }
  return true;
}

}  // namespace

void check_command_line(const std::vector<std::string>& args) {
  CLI::App app;
  CommandRegistry registry(app);
  parse_command_line(registry, args);
}

bool check_before_launch(const std::vector<std::string>& args) {
  CLI::App app;
  CommandRegistry registry(app);
  if (!parse_command_line(registry, args, /*answer_help=*/true)) return false;
  registry.require_chosen_runs_on_ranks();
  registry.preflight_chosen();
  return true;
}

CLI::Validator int_range(int64_t min, int64_t max) {
  const std::string low = std::to_string(min), high = std::to_string(max);
  return CLI::Validator(
      [min, max, low, high](std::string& input) {
        int64_t value = 0;
        if (!CLI::detail::lexical_cast(input, value)) return "'" + input + "' is not a whole number";
        if (value < min || value > max) return "Value " + input + " not in range " + low + " to " + high;
        return std::string();
      },
      "INT in [" + low + " - " + high + "]");
}

CLI::Validator non_empty() {
  return CLI::Validator([](std::string& input) { return input.empty() ? std::string("must not be empty") : ""; },
                        "NOT EMPTY");
}

}  // namespace segrun::launcher
