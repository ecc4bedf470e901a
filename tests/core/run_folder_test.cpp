// The run folder's status file (core/run_folder.h): the states round-trip through the file, a
// missing file is kNew, a reason stays on one line, a file naming no state is a DataError
// naming the file (and does not make a run folder).
#include "core/run_folder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"

namespace segrun {
namespace {

namespace fs = std::filesystem;

class RunStatusTest : public ::testing::Test {
 protected:
  RunStatusTest() : dir_(fs::temp_directory_path() / ("segrun-run-status-" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
  }
  ~RunStatusTest() override { fs::remove_all(dir_); }
  std::string dir() const { return dir_.string(); }
  std::string status_text() const {
    std::ifstream in(dir_ / "status");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  fs::path dir_;
};

TEST_F(RunStatusTest, FileNamesAreTheRunFolderFormat) {
  const RunFolder run("runs/a");
  EXPECT_EQ(run.config_path(), "runs/a/config.toml");
  EXPECT_EQ(run.status_path(), "runs/a/status");
  EXPECT_EQ(run.metrics_path(), "runs/a/metrics.jsonl");
  EXPECT_EQ(run.result_path(), "runs/a/result.json");
  EXPECT_EQ(run.overrides_path(), "runs/a/overrides.json");
  EXPECT_EQ(run.checkpoint_dir(), "runs/a/checkpoints");
  EXPECT_EQ(run.log_dir(), "runs/a/logs");
  RunFolder(dir()).create();
  EXPECT_TRUE(fs::is_directory(dir_ / "checkpoints"));
  EXPECT_TRUE(fs::is_directory(dir_ / "logs"));
}

// The command that continues a run names its launch when it ran on several ranks (a 1-rank
// resume of a 2-rank run is refused, or, without a checkpoint, trains it at another global batch).
TEST_F(RunStatusTest, TheResumeCommandLaunchesTheRanksTheRunHad) {
  const RunFolder run(dir());
  EXPECT_EQ(run.resume_command(), "segrun train " + dir() + " --resume auto");  // no logs yet
  run.create();
  for (const char* name : {"rank-0.log", "rank-1.log", "rank-10.log", "rank-x.log", "notes.txt"})
    std::ofstream(dir_ / "logs" / name) << "x\n";
  EXPECT_EQ(run.resume_command(), "segrun launch -n 11 -- train " + dir() + " --resume auto");
  fs::remove_all(dir_ / "logs");
  fs::create_directories(dir_ / "logs");
  std::ofstream(dir_ / "logs" / "rank-0.log") << "x\n";
  EXPECT_EQ(run.resume_command(), "segrun train " + dir() + " --resume auto");
  // Rank 0's own lines say the world it ran in last: a 2-rank attempt started over on 1 rank
  // left rank-1.log behind, and the run is a 1-rank run now.
  std::ofstream(dir_ / "logs" / "rank-1.log") << "x\n";
  std::ofstream(dir_ / "logs" / "rank-0.log")
      << "2026-12-07 18:36:25.776 info  r0/2 iter 20/200 loss 3.1\n2026-12-07 19:01:00.000 info  r0/1 iter 3/200\n";
  EXPECT_EQ(run.resume_command(), "segrun train " + dir() + " --resume auto");
  std::ofstream(dir_ / "logs" / "rank-0.log", std::ios::app) << "2026-12-07 19:02:00.000 warning r0/4 stop\n";
  EXPECT_EQ(run.resume_command(), "segrun launch -n 4 -- train " + dir() + " --resume auto");
  // With a checkpoint, the world that wrote it: a resume on 4 ranks of a run checkpointed by 2
  // was refused, and its error line is the last one rank 0 wrote.
  std::ofstream(dir_ / "logs" / "rank-0.log")
      << "2026-12-07 18:36:25.776 info  r0/2 checkpoint " << dir() << "/checkpoints/iter_20.pt\n"
      << "2026-12-07 19:02:00.000 error r0/4 refused\n";
  EXPECT_EQ(run.resume_command(), "segrun launch -n 4 -- train " + dir() + " --resume auto");  // no iter_*.pt yet
  std::ofstream(dir_ / "checkpoints" / "iter_20.pt") << "x";
  EXPECT_EQ(run.resume_command(), "segrun launch -n 2 -- train " + dir() + " --resume auto");
}

TEST_F(RunStatusTest, StatesRoundTripAndAMissingFileIsNew) {
  EXPECT_EQ(read_run_status(dir()).state, RunState::kNew);
  for (RunState state :
       {RunState::kQueued, RunState::kRunning, RunState::kPreempted, RunState::kFailed, RunState::kDone}) {
    write_run_status(dir(), state);
    EXPECT_EQ(status_text(), to_string(state) + "\n");
    EXPECT_EQ(read_run_status(dir()).state, state);
    EXPECT_EQ(read_run_status(dir()).reason, "");
    EXPECT_EQ(parse_run_state(to_string(state)), state);
  }
  EXPECT_EQ(parse_run_state("new"), std::nullopt);  // never written
  EXPECT_THROW(write_run_status(dir(), RunState::kNew), std::logic_error);
  EXPECT_EQ(kExitPreempted, 75);
}

// A status, result.json or overrides.json that is a folder says so (Linux opens a folder for
// reading, then reads nothing: it parsed as an empty file, "'' is not a run state").
TEST_F(RunStatusTest, AFileThatIsAFolderSaysSo) {
  fs::create_directories(dir_ / "status");
  try {
    read_run_status(dir());
    ADD_FAILURE() << "a status folder was read";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), (dir_ / "status").string() + ": a folder, not the run's status file");
  }
  try {
    read_file((dir_ / "status").string());
    ADD_FAILURE() << "a folder was read as a file";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), (dir_ / "status").string() + ": a folder, not a file");
  }
}

// result.json is the run's result only when it is a JSON object; an unreadable one is moved
// aside, each to a name of its own, and never deleted.
TEST_F(RunStatusTest, AnUnreadableResultIsNamedAndSetAsideWithoutReplacingAnother) {
  const RunFolder run(dir());
  const std::string result = run.result_path();
  EXPECT_EQ(run.result_problem(), "");  // none
  std::ofstream(result) << "{\"mIoU\": 41.5, \"per_class\": {}}\n";
  EXPECT_EQ(run.result_problem(), "");
  std::ofstream(result) << "{\"mIoU\": 4";
  EXPECT_EQ(run.result_problem(), result +
                                      ": not a segrun result.json (parse error at line 1, column 11: syntax error "
                                      "while parsing object - unexpected end of input; expected '}')");
  EXPECT_EQ(run.set_aside_result(), result + ".unreadable");
  EXPECT_FALSE(path_exists(result));
  EXPECT_EQ(read_file(result + ".unreadable"), "{\"mIoU\": 4");
  std::ofstream(result) << "41.5\n";
  EXPECT_EQ(run.result_problem(), result + ": not a segrun result.json (not a JSON object)");
  EXPECT_EQ(run.set_aside_result(), result + ".unreadable.2");
  EXPECT_EQ(read_file(result + ".unreadable"), "{\"mIoU\": 4");
  EXPECT_EQ(read_file(result + ".unreadable.2"), "41.5\n");
  fs::create_directories(result);
  EXPECT_EQ(run.result_problem(), result + ": a folder, not a file");
}

// An append that cannot be written says why (metrics.jsonl on a full disk said "short write").
TEST_F(RunStatusTest, AnAppendOnAFullDiskSaysSo) {
  try {
    append_line("/dev/full", "{\"iter\": 1}");
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "/dev/full: append failed: No space left on device");
  }
}

TEST_F(RunStatusTest, AReasonStaysOnOneLine) {
  write_run_status(dir(), RunState::kFailed, "data.store: not set\nsee the log");
  EXPECT_EQ(status_text(), "failed data.store: not set see the log\n");
  const RunStatus status = read_run_status(dir());
  EXPECT_EQ(status.state, RunState::kFailed);
  EXPECT_EQ(status.reason, "data.store: not set see the log");
}

TEST_F(RunStatusTest, AnUnknownStateNamesTheFile) {
  std::ofstream(dir_ / "status") << "finished early\n";
  try {
    read_run_status(dir());
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr((dir_ / "status").string()));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("'finished' is not a run state"));
  }
  // What a power loss can leave: NUL bytes, shown escaped (they would end the message), and the
  // command that rewrites the file.
  std::ofstream(dir_ / "status") << std::string(3, '\0');
  try {
    read_run_status(dir());
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), (dir_ / "status").string() +
                                         ": '\\x00\\x00\\x00' is not a run state (queued, running, preempted, "
                                         "failed, done); segrun train " +
                                         dir() + " --resume auto continues the run and rewrites it");
  }
}

TEST_F(RunStatusTest, OnlyAStatusThatNamesAStateMakesARunFolder) {
  EXPECT_FALSE(RunFolder(dir()).holds_run_files());
  std::ofstream(dir_ / "status") << "mine\n";  // a user's own file of that name
  EXPECT_FALSE(RunFolder(dir()).holds_run_files());
  write_run_status(dir(), RunState::kDone);
  EXPECT_TRUE(RunFolder(dir()).holds_run_files());
  fs::remove(dir_ / "status");
  // What another rank has just made (empty checkpoints/ and logs/, the lock): a run starting.
  fs::create_directories(dir_ / "logs");
  EXPECT_TRUE(RunFolder(dir()).holds_run_files());
  // A folder of the user's own that has a logs/ or checkpoints/ of its own: not a run.
  std::ofstream(dir_ / "config.toml") << "mine\n";
  EXPECT_FALSE(RunFolder(dir()).holds_run_files());
  fs::create_directories(dir_ / "checkpoints");
  std::ofstream(dir_ / "checkpoints" / "latest") << "mine\n";
  EXPECT_FALSE(RunFolder(dir()).holds_run_files());
  // segrun's own files in them: a run.
  std::ofstream(dir_ / "logs" / "rank-0.log") << "";
  EXPECT_TRUE(RunFolder(dir()).holds_run_files());
  fs::remove(dir_ / "logs" / "rank-0.log");
  std::ofstream(dir_ / "checkpoints" / "iter_2.pt") << "";
  EXPECT_TRUE(RunFolder(dir()).holds_run_files());
}

// Rank 0 checks the run folder (--run-dir) while another rank of the run may already be making
// it (create(), then its rank log): whatever moment the check sees, the folder is one a run may
// start in. A thread plays the other rank. Before the skeleton was checked first, the check
// refused the folder 63 to 135 times in these 400 x 50 looks (a rank log appearing between the
// log check and the skeleton check), and a 2-rank launch in CI exited 2.
TEST_F(RunStatusTest, AFolderAnotherRankIsMakingIsNeverRefused) {
  int refused = 0;
  constexpr int kTries = 400;
  for (int t = 0; t < kTries; ++t) {
    const fs::path run = dir_ / ("run" + std::to_string(t));
    fs::create_directories(run);
    std::atomic<bool> go{false};
    std::thread other_rank([&] {
      while (!go) {
      }
      RunFolder(run.string()).create();
      std::ofstream(run / "logs" / "rank-1.log") << "";
    });
    go = true;
    for (int look = 0; look < 50; ++look) {
      std::error_code ec;
      if (!fs::is_empty(run, ec) && !RunFolder(run.string()).holds_run_files()) ++refused;
    }
    other_rank.join();
  }
  EXPECT_EQ(refused, 0) << "of " << kTries << " x 50 looks";
}

}  // namespace
}  // namespace segrun
