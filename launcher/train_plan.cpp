#include "launcher/train_plan.h"

#include <filesystem>
#include <system_error>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/latest_checkpoint.h"
#include "core/run_folder.h"

namespace segrun::launcher {

RunSource run_source(const std::string& config_or_run, const std::string& run_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(config_or_run, ec)) return {config_or_run, run_dir};
  const RunFolder run(config_or_run);
  SEGRUN_CHECK(path_exists(run.config_path()), ConfigError,
               config_or_run << ": not a run folder (no config.toml); give a config file");
  return {run.config_path(), run_dir.empty() ? config_or_run : run_dir};
}

TrainPlan plan_train(const TrainCommand& command) {
  const RunSource source = run_source(command.config, command.run_dir);
  TrainPlan plan{load_config(source.config_path, command.overrides), {}};
  plan.request.run_dir = source.run_dir.empty() ? default_run_dir(plan.config) : source.run_dir;
  plan.request.resume = resolved_checkpoint_path("--resume", command.resume);  // "auto" and "" pass as they are
  return plan;
}

TrainCommand train_command_of(const std::vector<std::string>& words) {
  TrainCommand command;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& word = words[i];
    if (word.rfind("-", 0) == 0) {
      const size_t equals = word.find('=');
      const std::string option = word.substr(0, equals);
      std::string value;
      if (equals != std::string::npos)
        value = word.substr(equals + 1);
      else if (i + 1 < words.size())
        value = words[++i];
      if (option == "--run-dir") command.run_dir = value;
      if (option == "--resume") command.resume = value;
    } else if (command.config.empty()) {
      command.config = word;
    } else {
      command.overrides.push_back(word);
    }
  }
  return command;
}

}  // namespace segrun::launcher
