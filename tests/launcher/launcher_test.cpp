// The launcher's own part: every subcommand is registered once, by one of the groups main lists;
// CLI11 validates the options bound to the libraries' structs (layout names, ranges, HxW sizes);
// the launch command's stop signal follows the run's cluster.slurm.signal; segrun_on_ranks runs
// this very executable under mpirun.
#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "launcher/cluster_commands.h"
#include "launcher/data_commands.h"
#include "launcher/launch_commands.h"
#include "launcher/model_commands.h"
#include "launcher/run_commands.h"
#include "launcher/sweep_commands.h"
#include "tests/scratch_dir.h"

namespace segrun::launcher {
namespace {

// The CLI main builds, with every group.
struct Cli {
  CLI::App app{"segrun"};
  DataCommands data{app};
  RunCommands run{app};
  LaunchCommands launch{app};
  SweepCommands sweep{app};
  ClusterCommands cluster{app};
  ModelCommands model{app};
  std::vector<CommandGroup*> groups{&data, &run, &launch, &sweep, &cluster, &model};

  Cli() { app.require_subcommand(1); }
  // Parses a command line; the groups that say they are selected.
  std::vector<CommandGroup*> parse(std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());  // CLI11 takes them reversed
    app.parse(args);
    std::vector<CommandGroup*> selected;
    for (CommandGroup* g : groups)
      if (g->selected()) selected.push_back(g);
    return selected;
  }
};

TEST(Launcher, EverySubcommandIsRegisteredOnceByOneGroup) {
  Cli cli;
  std::vector<std::string> names;
  for (const CLI::App* sub : cli.app.get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
  EXPECT_EQ(names, (std::vector<std::string>{"data", "train", "eval", "metrics", "config", "launch", "demo", "sweep",
                                             "table", "submit", "status", "cancel", "model"}));
  const std::vector<std::pair<std::vector<std::string>, CommandGroup*>> lines{
      {{"data", "inspect", "store"}, &cli.data},
      {{"train", "cfg.toml", "train.lr=1e-4", "--run-dir", "r"}, &cli.run},
      {{"config", "cfg.toml"}, &cli.run},
      {{"launch", "-n", "2", "--", "train", "cfg.toml"}, &cli.launch},
      {{"demo", "--ranks", "1"}, &cli.launch},
      {{"sweep", "plan", "spec.toml"}, &cli.sweep},
      {{"table", "runs"}, &cli.sweep},
      {{"status", "runs/a"}, &cli.cluster},
      {{"model", "info", "cfg.toml"}, &cli.model},
  };
  for (const auto& [line, group] : lines) {
    Cli fresh;
    CommandGroup* expected = group == &cli.data      ? static_cast<CommandGroup*>(&fresh.data)
                             : group == &cli.run     ? static_cast<CommandGroup*>(&fresh.run)
                             : group == &cli.launch  ? static_cast<CommandGroup*>(&fresh.launch)
                             : group == &cli.sweep   ? static_cast<CommandGroup*>(&fresh.sweep)
                             : group == &cli.cluster ? static_cast<CommandGroup*>(&fresh.cluster)
                                                     : static_cast<CommandGroup*>(&fresh.model);
    EXPECT_EQ(fresh.parse(line), std::vector<CommandGroup*>{expected}) << line[0];
  }
}

TEST(Launcher, Cli11ChecksTheOptionsBoundToTheLibraries) {
  auto error_of = [](const std::vector<std::string>& line) -> std::string {
    Cli cli;
    try {
      cli.parse(line);
    } catch (const CLI::ParseError& e) {
      return e.what();
    }
    return "";
  };
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
  EXPECT_EQ(launched_stop_signal({"train", dir.str("missing.toml")}), SIGUSR1);  // the ranks report it
  EXPECT_EQ(launched_stop_signal({"data", "pack"}), SIGUSR1);
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

}  // namespace
}  // namespace segrun::launcher
