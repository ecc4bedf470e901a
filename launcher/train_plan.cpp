#include "launcher/train_plan.h"

#include <filesystem>
#include <system_error>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/run_folder.h"

namespace segrun::launcher {

TrainPlan plan_train(const TrainCommand& command) {
  std::string config_path = command.config;
  std::string run_dir = command.run_dir;
  std::error_code ec;
  if (std::filesystem::is_directory(command.config, ec)) {
    const RunFolder run(command.config);
    SEGRUN_CHECK(path_exists(run.config_path()), ConfigError,
                 command.config << ": not a run folder (no config.toml); give a config file");
    config_path = run.config_path();
    if (run_dir.empty()) run_dir = command.config;
  }
  TrainPlan plan{load_config(config_path, command.overrides), {}};
  plan.request.run_dir = run_dir.empty() ? "runs/" + plan.config.name : run_dir;
  plan.request.resume = command.resume;
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
