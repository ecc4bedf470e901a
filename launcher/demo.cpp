#include "launcher/demo.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "cluster/local_launch.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/output_paths.h"
#include "core/log.h"
#include "core/process.h"
#include "core/run_folder.h"
#include "data/synth.h"
#include "launcher/launch_commands.h"
#include "sweeps/report.h"
#include "launcher/demo_config.h"  // generated from configs/demo_tiny.toml: kDemoConfig

namespace segrun::launcher {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDemoMarker = ".segrun-demo";

int launch_segrun(int ranks, const std::vector<std::string>& args) {
  auto argv = segrun_on_ranks(ranks, "", args);
  log::info("$ {}", process::shell_join(argv));
  return cluster::run_and_wait(argv, SIGUSR1);  // the demo's config keeps cluster.slurm.signal = USR1
}

// Reads result.json of a run: (mIoU, number of classes with a defined IoU).
std::pair<double, int> read_result_headline(const std::string& result_json_path) {
  nlohmann::ordered_json result;
  try {
    result = nlohmann::ordered_json::parse(read_file(result_json_path));
    int classes = 0;
    for (const auto& item : result.at("per_class").items()) classes += item.value().is_null() ? 0 : 1;
    return {result.at("mIoU").is_null() ? NAN : result.at("mIoU").get<double>(), classes};
  } catch (const nlohmann::json::exception& e) {
    throw DataError(result_json_path + ": not a segrun result: " + e.what());
  }
}

void check_step(int code, const std::string& what) {
  if (code != 0) throw Error("demo: " + what + " failed (exit code " + std::to_string(code) + ")");
}

}  // namespace

int run_demo(const DemoOptions& cmd) {
  const auto started = std::chrono::steady_clock::now();
  const fs::path dir = resolved_output_path(cmd.dir);  // "new/.." is the current folder
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec) && !fs::exists(dir / kDemoMarker, ec))
    throw ConfigError(dir.string() + ": exists and is not a segrun demo folder; choose another --dir");
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot create: " + ec.message());
  write_file_atomic((dir / kDemoMarker).string(), "segrun demo folder\n");

  // 1. data in the real ADE20K layout, 2. packed into sharded stores by 2 ranks.
  const fs::path raw = dir / "ade20k";
  if (!fs::exists(raw / "ADEChallengeData2016", ec)) {
    data::SynthOptions synth;
    synth.layout = data::Layout::kAde20k;
    synth.out = raw.string();
    synth.train = 96;
    synth.val = 24;
    synth.height = 128;
    synth.width = 160;
    synth.seed = 0;
    log::info("demo 1/4: synthesizing ADE20K-layout data in {}", raw.string());
    data::synthesize(synth);
  }
  const std::pair<const char*, const char*> splits[] = {{"training", "train"}, {"validation", "val"}};
  for (const auto& [split, store] : splits) {
    const fs::path out = dir / "stores" / store;
    if (fs::exists(out / "manifest.json", ec)) continue;
    fs::remove_all(out, ec);  // an empty folder (a pack leaves no half-made store)
    log::info("demo 2/4: packing {} split on {} ranks", split, cmd.ranks);
    check_step(launch_segrun(cmd.ranks, {"data", "pack", "--layout", "ade20k", "--root", raw.string(), "--split", split,
                                         "--out", out.string(), "--shards", "2"}),
               std::string("packing ") + split);
  }

  // 3. train on N ranks, with a fresh run directory each time.
  const fs::path config_path = dir / "demo.toml";
  write_file_atomic(config_path.string(), kDemoConfig);
  int attempt = 1;
  fs::path run_dir;
  do {
    run_dir = dir / "runs" / ("demo-" + std::to_string(attempt++));
  } while (fs::exists(run_dir, ec));
  std::vector<std::string> train_args{"train", config_path.string(), "--run-dir", run_dir.string()};
  if (cmd.iters > 0) {
    train_args.push_back("train.iters=" + std::to_string(cmd.iters));
    train_args.push_back("train.warmup_iters=" + std::to_string(std::min<int64_t>(30, cmd.iters / 10)));
  }
  log::info("demo 3/4: training on {} ranks -> {}", cmd.ranks, run_dir.string());
  const int code = launch_segrun(cmd.ranks, train_args);
  if (code == kExitPreempted) {
    std::vector<std::string> resume{cluster::self_executable(), "launch", "-n", std::to_string(cmd.ranks), "--"};
    resume.insert(resume.end(), train_args.begin(), train_args.end());
    resume.push_back("--resume");
    resume.push_back("auto");
    std::cout << "demo: training stopped at a checkpoint; continue it with:\n  " << process::shell_join(resume) << "\n";
    return code;
  }
  check_step(code, "training");

  // 4. the result, and the run's report (curves, per-class IoU, sample predictions).
  auto [miou, classes] = read_result_headline(RunFolder(run_dir.string()).result_path());
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "demo: mIoU %.2f over the %d classes present in the validation split "
      "(a uniform random guess over them scores about %.2f); %ld s in all\n",
      miou, classes, 100.0 / std::max(2 * classes - 1, 1), static_cast<long>(seconds));
  sweeps::ReportOptions report;
  report.out = (dir / "report.html").string();
  const sweeps::ReportSource source = sweeps::load_report_source(run_dir.string(), "", true);
  const sweeps::ReportSummary written = sweeps::write_report(source, source.table, report);
  std::printf("demo: report of the run (curves, per-class IoU, %zu sample pictures): %s\n", written.images,
              written.path.c_str());
  return 0;
}

}  // namespace segrun::launcher
