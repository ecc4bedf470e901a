// The Trainer's steps driven one by one (tests/engine/CMakeLists.txt: one rank under mpirun):
// set_up / resume / step / log_window / checkpoint give the losses run() gives, a resumed trainer
// continues the same computation bit for bit, a run folder with checkpoints is refused without
// --resume, and each configured preemption signal (cluster.slurm.signal) stops run() after the
// iteration in progress with a checkpoint and the status "preempted". train.save_best: the best
// validation's checkpoint, its record in every checkpoint and in result.json, across a resume. A
// resume from an older checkpoint tells TensorBoard to drop the steps past it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "core/config.h"
#include "core/config_changes.h"
#include "core/error.h"
#include "core/folder_lock.h"
#include "core/process.h"
#include "core/stop_request.h"
#include "data/classes.h"
#include "data/pack.h"
#include "data/synth.h"
#include "dist/communicator.h"
#include "dist/rank_context.h"
#include "engine/checkpoint.h"
#include "engine/evaluator.h"
#include "engine/model_setup.h"
#include "engine/trainer.h"
#include "models/segmentor.h"
#include "tests/data/data_test_util.h"

namespace segrun::engine {
namespace {

namespace fs = std::filesystem;
using data::testing::TempDir;

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    data::SynthOptions synth;
    synth.out = *dir_ / "raw";
    synth.train = 8;
    synth.val = 2;
    synth.height = 48;
    synth.width = 64;
    synth.seed = 3;
    data::synthesize(synth);
    auto comm = dist::make_communicator("mpi", dist::singleton_context());
    for (const char* split : {"training", "validation"}) {
      data::PackOptions pack;
      pack.root = synth.out;
      pack.split = split;
      pack.out = *dir_ / (std::string(split) == "training" ? "train" : "val");
      data::pack_store(pack, *comm);
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static Config config(const std::vector<std::string>& overrides = {}) {
    std::ostringstream toml;
    toml << "name = \"trainer-test\"\n[data]\nstore = \"" << (*dir_ / "train") << "\"\nval_store = \""
         << (*dir_ / "val") << "\"\ncrop = [32, 32]\nscale = [64, 32]\nbatch_per_rank = 2\nworkers = 1\n"
         << "[model]\npretrained = \"none\"\nwidth = 8\nfpn_channels = 16\n"
         << "[train]\niters = 4\nlr = 2e-3\nwarmup_iters = 1\ncheckpoint_interval = 0\neval_interval = 0\n"
         << "[log]\ninterval = 2\n";
    return parse_config(toml.str(), "trainer_test", overrides);
  }
  static std::string run_dir(const std::string& name) { return *dir_ / ("runs/" + name); }
  // A new run's first `iterations` iterations as run() takes them (no final checkpoint, no final
  // evaluation): an attempt stopped or killed there; `checkpoint` checkpoints it at its end.
  static void first_iterations(const Config& c, const std::string& run, int64_t iterations, bool checkpoint) {
    Trainer attempt(c, dist::singleton_context(), {run, ""});
    attempt.set_up();
    ASSERT_EQ(attempt.resume(), 0);
    for (int64_t iter = 0; iter < iterations; ++iter) {
      attempt.step(iter);
      attempt.end_of_iteration(iter);
    }
    if (checkpoint) attempt.checkpoint(iterations);
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static TempDir* dir_;
};

TempDir* TrainerTest::dir_ = nullptr;

TEST_F(TrainerTest, StepsOneByOneAndResumeContinueTheSameComputation) {
  const Config c = config();
  const dist::RankContext context = dist::singleton_context();

  // Straight: four iterations, a log window every two.
  Trainer straight(c, context, {run_dir("straight"), ""});
  straight.set_up();
  ASSERT_EQ(straight.resume(), 0);
  straight.step(0);
  straight.step(1);
  const double straight_first = straight.log_window(2);
  straight.step(2);
  straight.step(3);
  const double straight_second = straight.log_window(4);
  EXPECT_TRUE(std::isfinite(straight_first));
  EXPECT_GT(straight_first, 0.0);
  EXPECT_NE(straight_first, straight_second);

  // Interrupted: two iterations and a checkpoint, then a second trainer resumes from it.
  {
    Trainer first(c, context, {run_dir("resumed"), ""});
    first.set_up();
    ASSERT_EQ(first.resume(), 0);
    first.step(0);
    first.step(1);
    EXPECT_EQ(first.log_window(2), straight_first);
    first.checkpoint(2);
  }
  EXPECT_EQ(checkpoints_newest_first(run_dir("resumed") + "/checkpoints").size(), 1u);
  Trainer second(c, context, {run_dir("resumed"), "auto"});
  second.set_up();
  ASSERT_EQ(second.resume(), 2);
  second.step(2);
  second.step(3);
  EXPECT_EQ(second.log_window(4), straight_second);  // bit for bit

  // run() gives the same: its metrics.jsonl carries the two window losses.
  const TrainOutcome outcome = Trainer(c, context, {run_dir("whole"), ""}).run();
  EXPECT_TRUE(outcome.finished);
  EXPECT_EQ(outcome.iterations, 4);
  EXPECT_TRUE(outcome.evaluated);
  EXPECT_EQ(read(run_dir("whole") + "/status").rfind("done", 0), 0u);
  const std::string metrics = read(run_dir("whole") + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"iter\":2,\"mode\":\"train\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"iter\":4,\"mode\":\"train\""), std::string::npos) << metrics;
}

TEST_F(TrainerTest, RefusesARunWithCheckpointsWithoutResume) {
  const Config c = config();
  const dist::RankContext context = dist::singleton_context();
  {
    Trainer t(c, context, {run_dir("refuse"), ""});
    t.set_up();
    t.resume();
    t.step(0);
    t.checkpoint(1);
  }
  EXPECT_THROW(Trainer(c, context, {run_dir("refuse"), ""}), ConfigError);
  EXPECT_NO_THROW(Trainer(c, context, {run_dir("refuse"), "auto"}));
  EXPECT_THROW(Trainer(c, context, {"", ""}), ConfigError);
}

TEST_F(TrainerTest, ACheckpointInsideALogWindowCarriesItToTheResumedRun) {
  const Config c = config({"log.interval=4"});
  const dist::RankContext context = dist::singleton_context();
  Trainer straight(c, context, {run_dir("window-straight"), ""});
  straight.set_up();
  ASSERT_EQ(straight.resume(), 0);
  for (int64_t i = 0; i < 4; ++i) straight.step(i);
  const double whole_window = straight.log_window(4);

  // Stopped after iteration 2 of the window 1-4 (a preemption): the checkpoint carries the
  // window's two steps, and the resumed run logs the line the straight one logged.
  {
    Trainer first(c, context, {run_dir("window-resumed"), ""});
    first.set_up();
    ASSERT_EQ(first.resume(), 0);
    first.step(0);
    first.step(1);
    first.checkpoint(2);
  }
  const std::string checkpoint = run_dir("window-resumed") + "/checkpoints/iter_2.pt";
  auto model = build_model(c, data::class_names(data::Layout::kAde20k), {}, dist::make_communicator("mpi", context),
                           /*with_pretrained=*/false);
  const CheckpointMeta meta = load_checkpoint(checkpoint, "", *model, nullptr);
  EXPECT_EQ(meta.window.iters, 2);
  EXPECT_EQ(meta.window.first, 0);
  Trainer second(c, context, {run_dir("window-resumed"), "auto"});
  second.set_up();
  ASSERT_EQ(second.resume(), 2);
  second.step(2);
  second.step(3);
  EXPECT_EQ(second.log_window(4), whole_window);  // bit for bit: the same sums in the same order
}

// A resume from an older checkpoint under a shorter train.iters starts a new line of training:
// the old line's later checkpoints move aside, so that pruning keeps the new line's and
// --resume auto continues the new line instead of jumping back onto the old one.
TEST_F(TrainerTest, AResumeFromAnOlderCheckpointSetsTheOldLinesLaterCheckpointsAside) {
  const dist::RankContext context = dist::singleton_context();
  const std::string dir = run_dir("new-line"), checkpoints = dir + "/checkpoints";
  const std::vector<std::string> every_2 = {"train.checkpoint_interval=2", "train.keep_checkpoints=3"};
  auto with = [&](const std::string& iters) {
    std::vector<std::string> o = every_2;
    o.push_back("train.iters=" + iters);
    return config(o);
  };
  ASSERT_TRUE(Trainer(with("8"), context, {dir, ""}).run().finished);
  ASSERT_EQ(checkpoints_newest_first(checkpoints).size(), 3u);  // 8, 6, 4

  EXPECT_TRUE(Trainer(with("5"), context, {dir, checkpoints + "/iter_4.pt"}).run().finished);
  EXPECT_EQ(checkpoints_newest_first(checkpoints),
            (std::vector<std::string>{checkpoints + "/iter_5.pt", checkpoints + "/iter_4.pt"}));
  EXPECT_TRUE(fs::is_regular_file(checkpoints + "/abandoned-at-4/iter_6.pt"));
  EXPECT_TRUE(fs::is_regular_file(checkpoints + "/abandoned-at-4/iter_8.pt"));

  // --resume auto under train.iters = 8 continues the new line at 5 (it used to take the old
  // line's iter_8.pt and report the run done).
  Trainer continued(with("8"), context, {dir, "auto"});
  continued.set_up();
  EXPECT_EQ(continued.resume(), 5);
}

TEST_F(TrainerTest, AMistakenResumeLeavesAFinishedRunAsItWas) {
  const dist::RankContext context = dist::singleton_context();
  const std::string dir = run_dir("finished");
  ASSERT_TRUE(Trainer(config(), context, {dir, ""}).run().finished);
  const std::string status = read(dir + "/status"), config_toml = read(dir + "/config.toml");
  ASSERT_EQ(status.rfind("done", 0), 0u);

  // Another model, another schedule: refused before anything is written, naming the key.
  try {
    Trainer(config({"model.width=16"}), context, {dir, "auto"});
    ADD_FAILURE() << "a resume under another model.width was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.width = 8, this command gives 16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Trainer(config({"train.lr=0.5"}), context, {dir, "auto"}), ConfigError);
  EXPECT_THROW(Trainer(config(), context, {dir, dir + "/checkpoints/iter_99.pt"}), ConfigError);
  // How long to train, how often to log and evaluate, and where the data is, may change.
  EXPECT_NO_THROW(Trainer(config({"train.iters=6", "log.interval=1", "train.eval_interval=2", "eval.flip=true"}),
                          context, {dir, "auto"}));

  // A checkpoint past train.iters, into a new folder: refused when it is loaded.
  const std::string past = run_dir("past-iters");
  EXPECT_THROW(Trainer(config({"train.iters=2"}), context, {past, dir + "/checkpoints/iter_4.pt"}).run(), ConfigError);
  EXPECT_FALSE(fs::exists(past + "/config.toml"));

  // Resuming the finished run as it is: nothing to train, nothing evaluated or written again.
  const std::string metrics = read(dir + "/metrics.jsonl");
  const auto written = fs::last_write_time(dir + "/checkpoints/iter_4.pt");
  const TrainOutcome again = Trainer(config(), context, {dir, "auto"}).run();
  EXPECT_TRUE(again.finished);
  EXPECT_EQ(again.iterations, 4);
  EXPECT_EQ(read(dir + "/metrics.jsonl"), metrics);
  EXPECT_EQ(fs::last_write_time(dir + "/checkpoints/iter_4.pt"), written);

  EXPECT_EQ(read(dir + "/status"), status);
  EXPECT_EQ(read(dir + "/config.toml"), config_toml);
}

// Two processes never train one run: the second is refused naming the holder, and writes
// nothing into the run (not even "failed"), whether it finds the run taken when it starts or is
// beaten to it after.
TEST_F(TrainerTest, OneProcessTrainsARunAtATime) {
  const dist::RankContext context = dist::singleton_context();
  const std::string dir = run_dir("busy");
  ASSERT_TRUE(Trainer(config(), context, {dir, ""}).run().finished);
  const std::string status = read(dir + "/status"), metrics = read(dir + "/metrics.jsonl");
  {
    std::optional<FolderLock> other = FolderLock::try_take(dir + "/.lock");  // as another process would
    ASSERT_TRUE(other);
    try {
      Trainer(config({"train.iters=6"}), context, {dir, "auto"});
      ADD_FAILURE() << "a run held by another process was resumed";
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(dir + ": already being trained by pid " + std::to_string(::getpid()), 0),
                0u)
          << e.what();
    }
    const std::string fresh = run_dir("taken-after");
    Trainer late(config(), context, {fresh, ""});
    fs::create_directories(fresh);
    std::optional<FolderLock> first = FolderLock::try_take(fresh + "/.lock");
    ASSERT_TRUE(first);
    EXPECT_THROW(late.run(), ConfigError);
    EXPECT_FALSE(fs::exists(fresh + "/status"));
  }
  EXPECT_EQ(read(dir + "/status"), status);
  EXPECT_EQ(read(dir + "/metrics.jsonl"), metrics);
  EXPECT_TRUE(Trainer(config({"train.iters=6"}), context, {dir, "auto"}).run().finished);  // released
}

// Resuming under the run's own config.toml leaves the file as its owner annotated it.
TEST_F(TrainerTest, AResumeUnderTheRunsOwnConfigKeepsItsFile) {
  const dist::RankContext context = dist::singleton_context();
  const std::string dir = run_dir("annotated");
  ASSERT_TRUE(Trainer(config({"train.checkpoint_interval=2"}), context, {dir, ""}).run().finished);
  fs::remove(dir + "/checkpoints/iter_4.pt");  // as if stopped after iteration 2
  std::ofstream(dir + "/status") << "preempted stopped by signal at iteration 2\n";
  std::ofstream(dir + "/config.toml", std::ios::app) << "# my note: lr as in run 7\n";
  const std::string annotated = read(dir + "/config.toml");
  const Config own = load_config(dir + "/config.toml");
  EXPECT_EQ(Trainer(own, context, {dir, "auto"}).run().iterations, 4);
  EXPECT_EQ(read(dir + "/config.toml"), annotated);
  EXPECT_EQ(read(dir + "/status").rfind("done", 0), 0u);
}

TEST_F(TrainerTest, NeverWritesIntoAFolderOfTheUsersFiles) {
  const dist::RankContext context = dist::singleton_context();
  const std::string mine = run_dir("mine");
  fs::create_directories(mine);
  std::ofstream(mine + "/config.toml") << "# my own notes\n";
  EXPECT_THROW(Trainer(config(), context, {mine, ""}), ConfigError);
  EXPECT_EQ(read(mine + "/config.toml"), "# my own notes\n");
  // An empty folder, or one a sweep prepared (overrides.json), is a run folder to be.
  const std::string empty = run_dir("empty");
  fs::create_directories(empty);
  EXPECT_NO_THROW(Trainer(config(), context, {empty, ""}));
  const std::string prepared = run_dir("prepared");
  fs::create_directories(prepared);
  std::ofstream(prepared + "/overrides.json") << "{}\n";
  EXPECT_NO_THROW(Trainer(config(), context, {prepared, ""}));
}

TEST(TrainRequest, ResumeMayChangeWhereAndHowOftenButNotWhatIsComputed) {
  const Config run = parse_config("", "run");
  Config now = run;
  now.data.store = "/elsewhere/train";
  now.train.eval_interval = 10;
  now.log.interval = 1;
  now.dist.backend = "nccl";
  now.eval.flip = true;
  EXPECT_TRUE(training_changes(run, now).empty());
  now.train.lr = 0.5;
  now.model.clip_sp.top_k = 7;
  const std::vector<ConfigChange> changes = training_changes(run, now);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].key, "model.clip_sp.top_k");
  EXPECT_EQ(changes[1].key, "train.lr");
  EXPECT_EQ(changes[1].after, "0.5");
}

TEST_F(TrainerTest, EachConfiguredSignalStopsAfterTheIterationWithACheckpoint) {
  const dist::RankContext context = dist::singleton_context();
  for (const std::string name : {"USR1", "USR2", "TERM"}) {
    SCOPED_TRACE(name);
    const Config c = config({"cluster.slurm.signal=" + name});
    const int signal = process::preemption_signal(name);
    process::clear_stop_request();
    process::install_stop_handlers(signal);
    std::raise(signal);  // arrives before the first iteration: the run stops at its end
    ASSERT_TRUE(process::stop_requested());
    const std::string dir = run_dir("stop-" + name);
    const TrainOutcome outcome = Trainer(c, context, {dir, ""}).run();
    EXPECT_FALSE(outcome.finished);
    EXPECT_EQ(outcome.iterations, 1);
    EXPECT_EQ(read(dir + "/status").rfind("preempted", 0), 0u) << read(dir + "/status");
    EXPECT_EQ(checkpoints_newest_first(dir + "/checkpoints").size(), 1u);
    process::clear_stop_request();
  }
  EXPECT_THROW(process::preemption_signal("HUP"), ConfigError);
  EXPECT_THROW(config({"cluster.slurm.signal=HUP"}), ConfigError);
}

// A checkpoint of another model is refused naming the settings that differ, not only the two
// signatures (a user who edited a run's config.toml must find the key to put back).
TEST(ModelSignature, TheDifferenceIsSaidByTheSettingsBehindIt) {
  Config config;
  config.model.backbone = "clip_rn50";
  config.model.width = 16;
  config.model.head = "fpn";
  const std::string current = model_signature(config, 150);
  EXPECT_EQ(current, "clip_rn50/w16/fpn/K150");
  EXPECT_EQ(describe_model_difference("clip_rn50/w8/fpn/K150", current),
            "model.width = 8 in the checkpoint, 16 in the config");
  EXPECT_EQ(describe_model_difference("clip_rn101/w16/fpn/K19", current),
            "model.backbone = clip_rn101 in the checkpoint, clip_rn50 in the config; classes (of the store): 19 in the "
            "checkpoint, 150 in the config");
  EXPECT_EQ(describe_model_difference("linear", current), "");  // not a signature of this form: the two are shown
  EXPECT_EQ(describe_model_difference(current, current), "");
}

TEST(BestValidation, KeepsTheHighestAndTheEarliestOfATie) {
  BestValidation best;
  EXPECT_FALSE(best.recorded());
  EXPECT_FALSE(best.offer("mIoU", std::nan(""), 1));  // no class scored yet
  EXPECT_FALSE(best.recorded());
  EXPECT_TRUE(best.offer("mIoU", 40.0, 2));
  EXPECT_FALSE(best.offer("mIoU", 38.5, 4));
  EXPECT_FALSE(best.offer("mIoU", 40.0, 6));  // a tie keeps iteration 2
  EXPECT_TRUE(best.offer("mIoU", 41.25, 8));
  EXPECT_EQ(best.metric, "mIoU");
  EXPECT_EQ(best.value, 41.25);
  EXPECT_EQ(best.iter, 8);
  // A resumed run under another metric starts over: 12 mAcc is not compared with 41.25 mIoU.
  EXPECT_TRUE(best.offer("mAcc", 12.0, 10));
  EXPECT_EQ(best.metric, "mAcc");
  EXPECT_EQ(best.iter, 10);
}

TEST(BestCheckpoint, IsRecordedInEveryCheckpointAndNeverPrunedOrResumedFrom) {
  TempDir dir;
  const std::string checkpoints = dir / "checkpoints";
  torch::nn::Linear model(3, 2);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-3));
  CheckpointMeta meta{6, 7, 2, "linear"};
  meta.best.offer("aAcc", 87.5, 4);
  save_best_checkpoint(checkpoints, CheckpointMeta{4, 7, 2, "linear", 0, 0, meta.best}, *model, optimizer);
  for (int64_t iter : {6, 8, 10}) {
    meta.next_iter = iter;
    save_checkpoint(checkpoints, meta, *model, optimizer, /*keep=*/1);
  }
  EXPECT_EQ(checkpoints_newest_first(checkpoints), std::vector<std::string>{checkpoints + "/iter_10.pt"});
  std::ifstream latest(checkpoints + "/latest");
  std::string latest_name;
  latest >> latest_name;
  EXPECT_EQ(latest_name, "iter_10.pt");

  torch::nn::Linear other(3, 2);
  for (const std::string name : {"iter_10.pt", "best.pt"}) {
    SCOPED_TRACE(name);
    const CheckpointMeta read = load_checkpoint(checkpoints + "/" + name, "linear", *other, nullptr);
    EXPECT_EQ(read.next_iter, name == "best.pt" ? 4 : 10);
    EXPECT_EQ(read.best.metric, "aAcc");
    EXPECT_EQ(read.best.value, 87.5);
    EXPECT_EQ(read.best.iter, 4);
  }
  // A checkpoint without a best (train.save_best = "none") reads back as none recorded.
  save_checkpoint(checkpoints, CheckpointMeta{12, 7, 2, "linear"}, *model, optimizer, 1);
  EXPECT_FALSE(load_checkpoint(checkpoints + "/iter_12.pt", "linear", *other, nullptr).best.recorded());
}

TEST(BestCheckpoint, AResumeContinuesFromTheHigherOfTheCheckpointsAndBestPtsRecords) {
  TempDir dir;
  const std::string checkpoints = dir / "checkpoints";
  torch::nn::Linear model(3, 2);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-3));
  BestValidation at_checkpoint;
  at_checkpoint.offer("mIoU", 40.0, 4);
  EXPECT_EQ(best_to_resume(checkpoints, at_checkpoint, "mIoU").iter, 4);  // no best.pt
  // best.pt of iteration 6, written after the checkpoint of iteration 4 by a run that died before
  // its next checkpoint: the file's record counts, so result.json will name the model it holds.
  BestValidation later = at_checkpoint;
  later.offer("mIoU", 42.5, 6);
  save_best_checkpoint(checkpoints, CheckpointMeta{6, 7, 1, "linear", 0, 0, later}, *model, optimizer);
  const BestValidation resumed = best_to_resume(checkpoints, at_checkpoint, "mIoU");
  EXPECT_EQ(resumed.value, 42.5);
  EXPECT_EQ(resumed.iter, 6);
  BestValidation higher;
  higher.offer("mIoU", 45.0, 8);
  EXPECT_EQ(best_to_resume(checkpoints, higher, "mIoU").iter, 8);
  EXPECT_EQ(best_to_resume(checkpoints, BestValidation{}, "mIoU").iter, 6);
  EXPECT_FALSE(best_to_resume(checkpoints, BestValidation{}, "mAcc").recorded());  // another metric
  // A resume that starts a new line at 4 (an older checkpoint, another train.iters): best.pt of
  // iteration 6 is the old line's; it does not count and moves aside with the later checkpoints.
  EXPECT_EQ(best_to_resume(checkpoints, at_checkpoint, "mIoU", /*abandoned_after=*/4).iter, 4);
  EXPECT_EQ(best_to_resume(checkpoints, at_checkpoint, "mIoU", /*abandoned_after=*/6).iter, 6);
  EXPECT_EQ(set_aside_checkpoints_after(checkpoints, 6), "");  // nothing past 6
  EXPECT_EQ(set_aside_checkpoints_after(checkpoints, 4), checkpoints + "/abandoned-at-4");
  EXPECT_TRUE(fs::is_regular_file(checkpoints + "/abandoned-at-4/best.pt"));
  fs::rename(checkpoints + "/abandoned-at-4/best.pt", checkpoints + "/best.pt");
  EXPECT_EQ(set_aside_checkpoints_after(checkpoints, 4), checkpoints + "/abandoned-at-4-2");  // a second time
  fs::rename(checkpoints + "/abandoned-at-4-2/best.pt", checkpoints + "/best.pt");
  {
    std::ofstream garbage(checkpoints + "/best.pt");
    garbage << "not a checkpoint";
  }
  EXPECT_EQ(best_to_resume(checkpoints, at_checkpoint, "mIoU").iter, 4);  // unreadable: a warning
}

// Every validation's mIoU in metrics.jsonl, by iteration.
std::vector<std::pair<int64_t, double>> validations(const std::string& metrics_path) {
  std::vector<std::pair<int64_t, double>> found;
  std::ifstream in(metrics_path);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json record = nlohmann::json::parse(line);
    if (record.at("mode") == "val")
      found.emplace_back(record.at("iter").get<int64_t>(), record.at("mIoU").get<double>());
  }
  return found;
}

TEST_F(TrainerTest, SaveBestKeepsTheBestValidationAcrossAResume) {
  const Config c =
      config({"train.iters=6", "train.eval_interval=1", "train.save_best=mIoU", "train.keep_checkpoints=1"});
  const dist::RankContext context = dist::singleton_context();
  const std::string whole = run_dir("best-whole");
  ASSERT_TRUE(Trainer(c, context, {whole, ""}).run().finished);

  // The best is the first highest of the six validations metrics.jsonl holds.
  const auto seen = validations(whole + "/metrics.jsonl");
  ASSERT_EQ(seen.size(), 6u);
  std::pair<int64_t, double> expected = seen.front();
  for (const auto& v : seen)
    if (v.second > expected.second) expected = v;
  const nlohmann::json result = nlohmann::json::parse(read(whole + "/result.json"));
  ASSERT_TRUE(result.contains("best_mIoU")) << result.dump();
  EXPECT_EQ(result["best_iter"].get<int64_t>(), expected.first);
  EXPECT_EQ(result["best_mIoU"].get<double>(), expected.second);
  EXPECT_FALSE(result.contains("best_mAcc"));
  // best.pt holds that model: evaluating it gives that mIoU, bit for bit.
  const CheckpointEvaluation evaluated = evaluate_checkpoint(c, context, whole + "/checkpoints/best.pt", {});
  EXPECT_EQ(evaluated.iteration, expected.first);
  EXPECT_EQ(evaluated.outcome.single.mIoU, expected.second);
  EXPECT_EQ(checkpoints_newest_first(whole + "/checkpoints"),
            std::vector<std::string>{whole + "/checkpoints/iter_6.pt"});

  // Stopped after three iterations (three validations), then resumed: the validations before the
  // stop still count, so the resumed run names the same best as the uninterrupted one.
  const std::string resumed = run_dir("best-resumed");
  ASSERT_NO_FATAL_FAILURE(first_iterations(c, resumed, 3, /*checkpoint=*/true));
  ASSERT_TRUE(Trainer(c, context, {resumed, "auto"}).run().finished);
  const nlohmann::json resumed_result = nlohmann::json::parse(read(resumed + "/result.json"));
  EXPECT_EQ(resumed_result["best_mIoU"], result["best_mIoU"]);
  EXPECT_EQ(resumed_result["best_iter"], result["best_iter"]);
  EXPECT_EQ(validations(resumed + "/metrics.jsonl"), seen);
  EXPECT_NE(read(resumed + "/logs/rank-0.log").find("best mIoU before the stop: "), std::string::npos);

  EXPECT_THROW(config({"train.save_best=mIoU", "data.val_store="}), ConfigError);
  EXPECT_THROW(config({"train.save_best=miou"}), ConfigError);
}

// A resume from a checkpoint older than the run's last records (here named on purpose): metrics.jsonl
// forgets the records past it, and the new TensorBoard event file starts with SessionLog START at
// the next step, so that TensorBoard (its Python event loader; tests/engine/read_tensorboard.py
// --purge does what it does) drops the first process's events from that step on: the curves are
// metrics.jsonl's again.
TEST_F(TrainerTest, AResumeFromAnOlderCheckpointTellsTensorBoardToDropTheStepsPastIt) {
  const Config c = config({"train.checkpoint_interval=2"});
  const dist::RankContext context = dist::singleton_context();
  const std::string run = run_dir("tb-resumed");
  ASSERT_TRUE(Trainer(c, context, {run, ""}).run().finished);  // logs at 2 and 4, validation at 4
  ASSERT_TRUE(Trainer(c, context, {run, run + "/checkpoints/iter_2.pt"}).run().finished);

  const auto tensorboard = [&](bool purge) {
    std::vector<std::string> command{SEGRUN_TEST_PYTHON,
                                     std::string(SEGRUN_TEST_SOURCE_DIR) + "/tests/engine/read_tensorboard.py"};
    if (purge) command.push_back("--purge");
    command.push_back(run + "/tb");
    const process::Captured read_back = process::run_captured(command);
    EXPECT_TRUE(read_back.status.ok()) << read_back.err;
    return nlohmann::json::parse(read_back.out);
  };
  const nlohmann::json raw = tensorboard(false);
  EXPECT_EQ(raw["files"], 2);
  EXPECT_EQ(raw["session_log"], nlohmann::json::parse("[[1, 3, 1]]"));  // the second file: START at step 3
  EXPECT_EQ(raw["scalars"]["train/loss"].size(), 3u);                   // 2, 4; then 4 again
  EXPECT_EQ(raw["scalars"]["val/mIoU"].size(), 2u);

  std::vector<std::pair<int64_t, float>> train_losses;  // metrics.jsonl's, as TensorBoard stores them
  double miou = 0;
  std::ifstream metrics(run + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const nlohmann::json record = nlohmann::json::parse(line);
    if (record.at("mode") == "train")
      train_losses.emplace_back(record.at("iter").get<int64_t>(), record.at("loss").get<float>());
    if (record.at("mode") == "val") miou = record.at("mIoU").get<double>();
  }
  ASSERT_EQ(train_losses.size(), 2u);
  const nlohmann::json shown = tensorboard(true);
  const nlohmann::json& losses = shown["scalars"]["train/loss"];
  ASSERT_EQ(losses.size(), 2u) << losses.dump();
  for (size_t i = 0; i < losses.size(); ++i) {
    EXPECT_EQ(losses[i][0].get<int64_t>(), train_losses[i].first);
    EXPECT_EQ(losses[i][1].get<float>(), train_losses[i].second);
  }
  ASSERT_EQ(shown["scalars"]["val/mIoU"].size(), 1u);
  EXPECT_EQ(shown["scalars"]["val/mIoU"][0][0], 4);
  EXPECT_EQ(shown["scalars"]["val/mIoU"][0][1].get<float>(), static_cast<float>(miou));
}

// An attempt that left records but no checkpoint (it failed, or was killed, before one), started
// again: the run starts over, so metrics.jsonl and TensorBoard hold the new line's records only
// (before, the old ones stayed in front of them: two curves in one, and a progress the new run had
// not made).
TEST_F(TrainerTest, ARunStartedOverForgetsTheRecordsOfTheAttemptBefore) {
  const Config c = config({"train.checkpoint_interval=0", "train.save_best=mIoU", "train.eval_interval=2"});
  const dist::RankContext context = dist::singleton_context();
  const std::string run = run_dir("started-over");
  ASSERT_NO_FATAL_FAILURE(first_iterations(c, run, 3, /*checkpoint=*/false));
  ASSERT_NE(read(run + "/metrics.jsonl").find("\"iter\":2"), std::string::npos);
  ASSERT_TRUE(fs::exists(run + "/checkpoints/best.pt"));  // validated at 2, never checkpointed
  ASSERT_TRUE(Trainer(c, context, {run, ""}).run().finished);
  // Its best.pt is set aside: a later resume of the new line must not take it for this line's best.
  EXPECT_TRUE(fs::exists(run + "/checkpoints/abandoned-at-0/best.pt"));
  std::vector<std::pair<int64_t, std::string>> records;
  std::ifstream metrics(run + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const nlohmann::json record = nlohmann::json::parse(line);
    records.emplace_back(record.at("iter").get<int64_t>(), record.at("mode").get<std::string>());
  }
  EXPECT_EQ(records,
            (std::vector<std::pair<int64_t, std::string>>{{2, "train"}, {2, "val"}, {4, "train"}, {4, "val"}}));
  const process::Captured shown = process::run_captured(
      {SEGRUN_TEST_PYTHON, std::string(SEGRUN_TEST_SOURCE_DIR) + "/tests/engine/read_tensorboard.py", "--purge",
       run + "/tb"});
  ASSERT_TRUE(shown.status.ok()) << shown.err;
  EXPECT_EQ(nlohmann::json::parse(shown.out)["scalars"]["train/loss"].size(), 2u) << shown.out;
}

// A metrics.jsonl line cut short (a crash, a full disk) is removed when the run continues: it
// would otherwise lie inside the file, where every reader refuses it.
TEST_F(TrainerTest, AResumeRemovesALineCutShortFromMetricsJsonl) {
  const Config c = config();
  const std::string run = run_dir("cut-line");
  ASSERT_NO_FATAL_FAILURE(first_iterations(c, run, 2, /*checkpoint=*/true));
  std::ofstream(run + "/metrics.jsonl", std::ios::app) << "{\"iter\": 3, \"mode\": \"tr";
  ASSERT_TRUE(Trainer(c, dist::singleton_context(), {run, "auto"}).run().finished);
  std::ifstream metrics(run + "/metrics.jsonl");
  int records = 0;
  for (std::string line; std::getline(metrics, line); ++records)
    EXPECT_TRUE(nlohmann::json::parse(line, nullptr, false).is_object()) << line;
  EXPECT_GE(records, 3);  // iteration 2's, 4's and the final validation
}

// result.json's seconds are the run's wall time over all its starts, not the last start's alone
// (a preempted run): each checkpoint carries the time up to it.
TEST_F(TrainerTest, ResultSecondsCountTheStartsBeforeTheResume) {
  const Config c = config();
  const dist::RankContext context = dist::singleton_context();
  const std::string run = run_dir("seconds");
  {
    Trainer first(c, context, {run, ""});
    first.set_up();
    ASSERT_EQ(first.resume(), 0);
    first.step(0);
    first.end_of_iteration(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the first start: at least 1.5 s
    first.checkpoint(1);
  }
  const TrainOutcome resumed = Trainer(c, context, {run, "auto"}).run();
  ASSERT_TRUE(resumed.finished);
  const double seconds = nlohmann::json::parse(read(run + "/result.json")).at("seconds").get<double>();
  EXPECT_GE(seconds, resumed.seconds + 1.5) << "this start: " << resumed.seconds;
  EXPECT_LT(seconds, resumed.seconds + 60.0);
}

}  // namespace
}  // namespace segrun::engine
