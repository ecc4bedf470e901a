// The launcher's own part: every subcommand is registered once, by one of the groups
// add_segrun_commands lists; CLI11 validates the options bound to the libraries' structs (layout
// names, ranges, HxW sizes); a rejected command line is one line naming the command; the launch
// command's stop signal follows the run's cluster.slurm.signal; segrun_on_ranks runs this very
// executable under mpirun.
#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/config_reference.h"
#include "core/error.h"
#include "launcher/command_group.h"
#include "launcher/launch_commands.h"
#include "launcher/mpi_holder.h"
#include "launcher/train_plan.h"
#include "tests/scratch_dir.h"

namespace segrun::launcher {
namespace {

// The CLI main builds, with every group; chosen() names the leaf subcommands a line chose.
struct Cli {
  CLI::App app;
  CommandRegistry commands{app};

  Cli() { add_segrun_commands(commands); }
  void parse(std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());  // CLI11 takes them reversed
    app.parse(args);
  }
  // The leaf subcommands the command line chose.
  std::vector<std::string> chosen() const {
    std::vector<std::string> names;
    std::function<void(const CLI::App*)> walk = [&](const CLI::App* a) {
      for (const CLI::App* sub : a->get_subcommands()) {
        if (sub->get_subcommands().empty()) names.push_back(sub->get_name());
        walk(sub);
      }
    };
    walk(&app);
    return names;
  }
};

TEST(Launcher, EverySubcommandIsRegisteredOnce) {
  Cli cli;
  std::vector<std::string> names;
  for (const CLI::App* sub : cli.app.get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
  EXPECT_EQ(names, (std::vector<std::string>{"data", "train", "eval", "predict", "metrics", "config", "launch", "demo",
                                             "sweep", "table", "report", "submit", "status", "cancel", "model"}));
  const std::vector<std::pair<std::vector<std::string>, std::string>> lines{
      {{"data", "inspect", "store"}, "inspect"},
      {{"train", "cfg.toml", "train.lr=1e-4", "--run-dir", "r"}, "train"},
      {{"config", "cfg.toml"}, "config"},
      {{"config", "--keys"}, "config"},
      {{"config", "--keys", "model.mta", "--format", "md"}, "config"},
      {{"predict", "runs/a", "--images", "photos", "--out", "preds"}, "predict"},
      {{"launch", "-n", "2", "--", "train", "cfg.toml"}, "launch"},
      {{"demo", "--ranks", "1"}, "demo"},
      {{"sweep", "plan", "spec.toml"}, "plan"},
      {{"table", "runs"}, "table"},
      {{"status", "runs/a"}, "status"},
      {{"model", "info", "cfg.toml"}, "info"},
  };
  for (const auto& [line, leaf] : lines) {
    Cli fresh;
    fresh.parse(line);
    EXPECT_EQ(fresh.chosen(), std::vector<std::string>{leaf}) << line[0];
  }
  // The chosen action runs: `config` of a missing file reaches load_config and throws its error.
  Cli cli_config;
  cli_config.parse({"config", "/nonexistent/cfg.toml"});
  int code = -1;
  int argc = 0;
  char** argv = nullptr;
  MpiHolder mpi(&argc, &argv);  // `config` never starts MPI
  EXPECT_THROW(cli_config.commands.run_chosen(mpi, &code), std::exception);
  EXPECT_FALSE(mpi.active());
}

// What parsing `line` throws: CLI11's own message, or (as_printed) the line main prints for it;
// "" when the line parses.
std::string rejection_of(const std::vector<std::string>& line, bool as_printed = false) {
  Cli cli;
  try {
    cli.parse(line);
  } catch (const CLI::ParseError& e) {
    return as_printed ? usage_error_message(cli.app, line, e) : e.what();
  }
  return "";
}

TEST(Launcher, Cli11ChecksTheOptionsBoundToTheLibraries) {
  const auto error_of = [](const std::vector<std::string>& line) { return rejection_of(line); };
  EXPECT_EQ(error_of({"data", "pack", "--root", "r", "--split", "s", "--out", "o", "--shards", "0"}),
            "--shards: Value 0 not in range 1 to 100000");
  EXPECT_NE(error_of({"data", "pack", "--layout", "kitti", "--root", "r", "--split", "s", "--out", "o"}).find("kitti"),
            std::string::npos);
  EXPECT_EQ(error_of({"data", "pack", "--layout", "cityscapes", "--root", "r", "--split", "s", "--out", "o"}), "");
  EXPECT_EQ(error_of({"data", "synth", "--out", "s", "--size", "12x"}),
            "--size: '12x': expected HxW with 16 <= H, W <= 8192 (e.g. 128x160)");
  EXPECT_EQ(error_of({"data", "synth", "--out", "s", "--size", "32x48", "--train", "0"}),
            "--train: Value 0 not in range 1 to 1000000");
  EXPECT_EQ(error_of({"metrics", "--pred", "p", "--gt", "g", "--num-classes", "256"}),
            "--num-classes: Value 256 not in range 1 to 255");
  EXPECT_EQ(error_of({"submit", "cfg.toml", "--nodes", "0"}), "--nodes: Value 0 not in range 1 to 65536");
  EXPECT_EQ(error_of({"submit", "cfg.toml", "--launcher", "ssh"}).find("--launcher"), 0u);
  EXPECT_EQ(error_of({"launch", "-n", "0", "--", "train", "c"}), "--ranks: Value 0 not in range 1 to 65536");
  EXPECT_EQ(error_of({"launch", "-n", "two", "--", "train", "c"}), "--ranks: 'two' is not a whole number");
}

// `config --keys [PREFIX]` prints the key reference (docs/config.md with --format md) instead of
// a config, which it then must not be given; without --keys a config file is required.
TEST(Launcher, ConfigKeysPrintsTheKeyReference) {
  const auto printed = [](const std::vector<std::string>& line) {
    Cli cli;
    cli.parse(line);
    int argc = 0;
    char** argv = nullptr;
    MpiHolder mpi(&argc, &argv);
    int code = -1;
    ::testing::internal::CaptureStdout();
    try {
      cli.commands.run_chosen(mpi, &code);
    } catch (...) {
      ::testing::internal::GetCapturedStdout();  // stdout back before the error goes on
      throw;
    }
    const std::string out = ::testing::internal::GetCapturedStdout();
    EXPECT_EQ(code, 0);
    return out;
  };
  EXPECT_EQ(printed({"config", "--keys", "--format", "md"}), config_reference_page());
  EXPECT_EQ(printed({"config", "--keys"}), format_key_reference(config_key_infos(), ReferenceFormat::kText));
  EXPECT_EQ(printed({"config", "--keys", "model.mta"}),
            format_key_reference(keys_with_prefix("model.mta"), ReferenceFormat::kText));
  EXPECT_EQ(printed({"config", "--format", "md", "--keys", "train.lr"}),
            format_key_reference(keys_with_prefix("train.lr"), ReferenceFormat::kMarkdown));
  EXPECT_THROW(printed({"config", "--keys", "modle.vit"}), ConfigError);

  const auto usage_error = [](const std::vector<std::string>& line) { return rejection_of(line, true); };
  EXPECT_EQ(usage_error({"config"}), "config: config is required (segrun config --help)");
  EXPECT_EQ(usage_error({"config", "cfg.toml", "--keys"}), "config: config excludes --keys (segrun config --help)");
  EXPECT_EQ(usage_error({"config", "cfg.toml", "--format", "md"}),
            "config: --format requires --keys (segrun config --help)");
  EXPECT_NE(usage_error({"config", "--keys", "--format", "pdf"}).find("--format"), std::string::npos);
}

TEST(Launcher, TheLaunchStopSignalFollowsTheRunsConfig) {
  segrun::testing::ScratchDir dir("launcher");
  std::ofstream(dir.str("usr2.toml")) << "[cluster.slurm]\nsignal = \"USR2\"\n";
  std::ofstream(dir.str("plain.toml")) << "name = \"plain\"\n";
  EXPECT_EQ(launched_stop_signal({"train", dir.str("usr2.toml"), "--run-dir", "r"}), SIGUSR2);
  EXPECT_EQ(launched_stop_signal({"train", dir.str("plain.toml")}), SIGUSR1);
  EXPECT_EQ(launched_stop_signal({"train", dir.str("plain.toml"), "--resume", "auto", "cluster.slurm.signal=USR2"}),
            SIGUSR2);
  // TERM: mpirun passes on only USR1/USR2; the trainer listens to SIGUSR1 too then.
  EXPECT_EQ(launched_stop_signal({"train", dir.str("plain.toml"), "cluster.slurm.signal=TERM"}), SIGUSR1);
  EXPECT_EQ(launched_stop_signal({"train", "--run-dir", "r", dir.str("usr2.toml")}), SIGUSR2);  // options first
  EXPECT_EQ(launched_stop_signal({"data", "pack"}), SIGUSR1);
  // A config that does not load stops the launch before any rank starts, with its own message.
  EXPECT_THROW(launched_stop_signal({"train", dir.str("missing.toml")}), ConfigError);
  EXPECT_THROW(launched_stop_signal({"train", dir.str("plain.toml"), "train.lrr=1"}), ConfigError);
}

TEST(Launcher, ARunFolderStandsForItsConfigAndItself) {
  // What train and submit make of CONFIG|RUN_DIR (launcher/train_plan.h's run_source).
  segrun::testing::ScratchDir dir("launcher-source");
  std::filesystem::create_directories(dir.path() / "run");
  std::ofstream(dir.str("run/config.toml")) << "name = \"r\"\n";
  std::filesystem::create_directories(dir.path() / "other");
  const RunSource run = run_source(dir.str("run"), "");
  EXPECT_EQ(run.config_path, dir.str("run") + "/config.toml");
  EXPECT_EQ(run.run_dir, dir.str("run"));
  EXPECT_EQ(run_source(dir.str("run"), "elsewhere").run_dir, "elsewhere");
  const RunSource file = run_source(dir.str("run/config.toml"), "");
  EXPECT_EQ(file.config_path, dir.str("run/config.toml"));
  EXPECT_EQ(file.run_dir, "");
  try {
    run_source(dir.str("other"), "");
    ADD_FAILURE() << "a folder without config.toml was taken for a run";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), dir.str("other") + ": not a run folder (no config.toml); give a config file");
  }
}

// The line main prints (exit 2) for a command line CLI11 rejects, and launch's check of the line
// it will run on every rank.
TEST(Launcher, ARejectedCommandLineIsOneLineNamingTheCommand) {
  const auto usage_error = [](const std::vector<std::string>& line) { return rejection_of(line, true); };
  EXPECT_EQ(usage_error({"trian", "cfg.toml"}), "unknown command 'trian' (did you mean 'train'?)");
  EXPECT_EQ(usage_error({"data", "pak", "--root", "r"}), "unknown 'data' subcommand 'pak' (did you mean 'pack'?)");
  EXPECT_EQ(usage_error({"sweep", "go", "spec.toml"}), "unknown 'sweep' subcommand 'go' (one of plan, run, status)");
  EXPECT_EQ(usage_error({"data"}), "a 'data' subcommand is required: one of synth, pack, inspect");
  EXPECT_EQ(usage_error({}).rfind("a command is required: one of data, train, eval, ", 0), 0u) << usage_error({});
  EXPECT_EQ(usage_error({"launch", "-n", "0", "--", "train", "c"}),
            "launch: --ranks: Value 0 not in range 1 to 65536 (segrun launch --help)");
  EXPECT_EQ(usage_error({"data", "pack", "--root", "r", "--split", "s", "--out", "o", "--shards", "0"}),
            "data pack: --shards: Value 0 not in range 1 to 100000 (segrun data pack --help)");
  EXPECT_EQ(usage_error({"train", "cfg.toml", "--learning-rate", "3"}),
            "train: unknown option '--learning-rate' (segrun train --help)");
  // A misspelt option is named, not the required option it failed to give.
  EXPECT_EQ(usage_error({"predict", "cfg.toml", "--imgs", "a.png", "--out", "o"}),
            "predict: unknown option '--imgs' (did you mean '--images'?) (segrun predict --help)");
  EXPECT_EQ(usage_error({"eval", "--ruun-dir=x"}),
            "eval: unknown option '--ruun-dir' (did you mean '--run-dir'?) (segrun eval --help)");
  EXPECT_EQ(usage_error({"--verbos", "train", "cfg.toml"}), "unknown option '--verbos' (segrun --help)");
  EXPECT_EQ(usage_error({"train", "cfg.toml", "--run-dir", "r"}), "");

  EXPECT_NO_THROW(check_command_line({"train", "cfg.toml", "train.lr=1e-4", "--run-dir", "r"}));
  EXPECT_NO_THROW(check_command_line({"eval", "--help"}));
  EXPECT_NO_THROW(check_command_line({"eval", "runs/a"}));  // a run folder needs no --checkpoint
  try {
    check_command_line({"metrics", "--gt", "g", "--num-classes", "4"});
    ADD_FAILURE() << "metrics without --pred passed the check";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "metrics: --pred is required (segrun metrics --help)");
  }
}

TEST(Launcher, SegrunOnRanksRunsThisExecutableUnderMpirun) {
  const std::vector<std::string> argv = segrun_on_ranks(3, "a:2,b:1", {"train", "cfg.toml"});
  ASSERT_GE(argv.size(), 5u);
  EXPECT_EQ(argv[0], "mpirun");
  EXPECT_EQ(argv[1], "-np");
  EXPECT_EQ(argv[2], "3");
  EXPECT_NE(std::find(argv.begin(), argv.end(), "a:2,b:1"), argv.end());
  EXPECT_EQ(argv[argv.size() - 2], "train");
  EXPECT_EQ(argv.back(), "cfg.toml");
  EXPECT_NE(argv[argv.size() - 3].find("launcher_test"), std::string::npos);  // /proc/self/exe
}

// Ranks on other hosts (started over ssh) get only what -x names: the launcher's NCCL_* / UCX_*
// settings, NCCL_DEBUG=WARN and PCI order by default, and --export; no OMP_NUM_THREADS from this
// machine's cores (each rank divides its own host's). On this machine alone the thread count is
// this machine's.
TEST(Launcher, RanksOnOtherHostsGetTheNcclSettingsAndTheirOwnThreadCount) {
  ::setenv("NCCL_SOCKET_IFNAME", "ib0", 1);
  ::unsetenv("NCCL_DEBUG");
  const std::vector<std::string> argv =
      segrun_on_ranks(8, "node1:4,node2:4", {"train", "cfg.toml"}, {"NCCL_IB_HCA=mlx5_0", "HOME"});
  const auto has = [&argv](const std::string& word) { return std::find(argv.begin(), argv.end(), word) != argv.end(); };
  EXPECT_TRUE(has("NCCL_SOCKET_IFNAME"));
  EXPECT_TRUE(has("NCCL_DEBUG=WARN"));
  EXPECT_TRUE(has("CUDA_DEVICE_ORDER=PCI_BUS_ID"));
  EXPECT_TRUE(has("NCCL_IB_HCA=mlx5_0"));
  EXPECT_TRUE(has("HOME"));
  for (const std::string& word : argv) EXPECT_EQ(word.rfind("OMP_NUM_THREADS", 0), std::string::npos) << word;

  const std::vector<std::string> local = segrun_on_ranks(2, "", {"train", "cfg.toml"});
  EXPECT_NE(std::find_if(local.begin(), local.end(),
                         [](const std::string& w) { return w.rfind("OMP_NUM_THREADS=", 0) == 0; }),
            local.end());
  ::unsetenv("NCCL_SOCKET_IFNAME");

  try {
    segrun_on_ranks(8, "node1:4,node1:4", {"train", "cfg.toml"});
    ADD_FAILURE() << "a host given twice was accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(
        e.what(),
        "--hosts: node1 is given twice ('node1:4,node1:4'); give each host once, with all its slots (node1:N)");
  }
  EXPECT_THROW(segrun_on_ranks(2, "", {"train"}, {"1BAD=x"}), ConfigError);
  EXPECT_THROW(segrun_on_ranks(2, "", {"train"}, {"=x"}), ConfigError);
}

}  // namespace
}  // namespace segrun::launcher
