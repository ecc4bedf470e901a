#pragma once
// Run registry: what the sweeps layer reads from and writes into run directories (the contract
// in core/run_folder.h), without depending on the engine. It reads status, metrics.jsonl,
// result.json and checkpoints/, and owns one file of its own, overrides.json, written before a
// run is launched: {"sweep", "id", "seed", "overrides": {key: canonical TOML text}, "base",
// "fingerprint", "command"}. Tables are built from overrides.json because config.toml holds
// every key resolved and cannot tell what was swept.
//
// Planning a sweep maps each expanded run to an action: done -> reuse; a run with a checkpoint
// that is not done (preempted, running when killed, failed) -> resume with --resume auto; failed
// without a checkpoint -> retry from scratch; nothing on disk / queued -> new.
// All functions are thread-compatible (no shared state); writes are atomic (core/atomic_file.h).

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/config_changes.h"
#include "core/run_folder.h"
#include "sweeps/spec.h"

namespace segrun::sweeps {

struct RunRecord {
  std::string dir;  // the run directory
  std::string id;   // from overrides.json ("" when absent)
  std::string sweep;
  Overrides overrides;
  uint64_t seed = 0;
  std::string fingerprint;
  RunState state = RunState::kNew;  // the status file (core/run_folder.h); kNew: none yet
  std::string reason;               // the rest of the status line
  bool has_checkpoint = false;      // checkpoints/iter_<n>.pt exists
  int64_t checkpoint_iter = -1;     // the highest such n: where --resume auto starts (-1: none)
  // Of a run with checkpoints that is not finished: the number of ranks that wrote the newest
  // (core/rank_logs.h's checkpoint_world_size; a resume must run on as many), 0 when unknown.
  int checkpoint_world = 0;
  int64_t last_iter = -1;                  // last "iter" in metrics.jsonl (-1: none)
  std::map<std::string, double> last_val;  // numeric fields of the last "val" line of metrics.jsonl
  bool has_result = false;
  // Why result.json is there but cannot be read (core/run_folder.h's result_problem); "" otherwise.
  // Such a run has no result (has_result false): a done one is evaluated again, as one without.
  std::string result_error;
  // Finished: status done and its result.json (a run marked done without it is evaluated again).
  bool finished() const { return state == RunState::kDone && has_result; }
  int64_t result_written_ns = 0;            // result.json's modification time (file clock), 0 without one
  std::map<std::string, double> result;     // numeric top-level fields of result.json (mIoU, ...)
  std::map<std::string, double> per_class;  // per_class IoU of result.json, NaN for null
  // A sweep's done run trained under an earlier base config, as the plan finds it ("the run was
  // trained with model.width = 8, the sweep now gives 16"); "" otherwise.
  std::string config_change;
  // Only for a running run: who holds its lock (core/folder_lock.h's lock_holder): "pid 1234 on
  // node7 since ...", "" when nobody does (the process died without updating the status), nullopt
  // when it cannot be known (a run from before the lock, or no flock on the file system).
  std::optional<std::string> holder;
};

// data.store and data.val_store: where a run's data is read from.
bool is_store_key(const std::string& key);
// A store key's canonical value with the folder resolved: "st/val", "st/val/", "./st/val",
// "st/val/manifest.json" and a link to it are one store (scan_trained_runs compares runs by it;
// a table's --where / --baseline values of a runs folder are resolved the same way).
std::string canonical_store_value(const std::string& canonical);

// The run's state as status commands show it: the status file's word, except that a running run
// says who trains it ("running (pid 1234 on node7 since ...)") or, when nobody holds it any more,
// "stale: ..." with the command that continues it, and a done run without its result.json says so.
std::string describe_run_state(const RunRecord& run);

// How far the run got: result.json's iterations when done, else the furthest of the last logged
// iteration and the newest checkpoint (where --resume auto continues); 0 when neither exists.
int64_t run_progress(const RunRecord& run);

// Calls `visit` with each record of a metrics.jsonl file (one JSON object a line), in order. Blank
// lines are passed over, and so is a last line cut short by a crash; any other line that is not a
// JSON object is corruption: DataError "<path>:<line>: not JSON" (or "...: not a JSON object").
// IoError when the file cannot be read.
void for_each_metrics_record(const std::string& metrics_path,
                             const std::function<void(const nlohmann::ordered_json&)>& visit);

// Reads what exists of a run directory; DataError naming the file if one is corrupt, except
// result.json (result_error).
RunRecord read_run(const std::string& dir);
// A run folder as the engine or `segrun submit` leaves it: its resolved config.toml and something
// it measured (metrics.jsonl or result.json) or a status (queued, failed before its first metrics).
bool is_run_folder(const std::string& dir);
// The direct subfolders of runs_dir that `keep` accepts, sorted by name. DataError when runs_dir
// is not a folder.
std::vector<std::string> sorted_subfolders(const std::string& runs_dir,
                                           const std::function<bool(const RunFolder&)>& keep);
// Every direct subdirectory of runs_dir holding an overrides.json, sorted by name. DataError
// when runs_dir does not exist.
std::vector<RunRecord> scan_runs(const std::string& runs_dir);
// Runs trained one by one (`segrun train --run-dir <runs_dir>/<name>`, no sweep): every direct
// subdirectory that is a run folder, sorted by name, each with `overrides` set to the config keys
// whose resolved values (config.toml) are not the same in all of them ("" where a run lacks the
// key) and `seed` to its train.seed, so that a table compares them as it does a sweep's runs.
// Keys that change no result (core/config_changes.h changes_result: log.*, data.on_corrupt, the stores'
// paths...) count only when no other key differs, and then `name` alone when it differs;
// `global_batch` (result.json's: batch_per_rank x ranks x train.accumulate) tells runs trained
// on different numbers of ranks apart. DataError when runs_dir does not exist or a config.toml is not TOML.
std::vector<RunRecord> scan_trained_runs(const std::string& runs_dir);
// The result.json field, and the table key of scan_trained_runs, that holds a run's global batch.
inline constexpr const char* kGlobalBatchKey = "global_batch";

// The runs folder of a sweep: override if given, else spec.runs_dir, else runs/<name>.
// ConfigError naming it when it exists and is not a folder.
std::string sweep_runs_dir(const SweepSpec& spec, const std::string& override_dir);

// kOnSlurm: not done, and the Slurm job recorded in its folder is pending or running: a local
// `sweep run` leaves it to that job (see mark_slurm_jobs).
enum class PlanAction { kNew, kReuse, kResume, kRetry, kOnSlurm };
std::string to_string(PlanAction action);

struct PlanEntry {
  PlannedRun run;
  std::string dir;  // <runs_dir>/<run.dir_name>, or the folder with an older name that holds the run
  RunRecord record;
  PlanAction action = PlanAction::kNew;
  // done or to resume, but the config the sweep now gives it differs from the one it ran (its
  // config.toml) in a key that changes its result: a resumed run would finish under the new one.
  bool config_changed = false;
  std::string config_change;  // with config_changed: which keys ("the run was trained with ...")
  std::string slurm_job;      // kOnSlurm: "<job id> (<state>)"
  // kResume: "<N> rank(s), [resources] ranks = <M>" when its checkpoints were written by another
  // number of ranks than the spec gives a run (resume_refusal leaves it as it is).
  std::string ranks_change;
  // kResume: why `sweep run` leaves it as it is (resume_refusal: another number of ranks, or a key
  // that shapes training changed in the base config); "" when it resumes.
  std::string refusal;
  // The name of dir (what plans, logs and a job array's tasks name the run by).
  std::string folder_name() const;
};
std::vector<PlanEntry> plan_sweep(const SweepSpec& spec, const std::string& runs_dir);
// Turns every run not done whose folder is a key of `active` (run dir -> "<job id> (<state>)" of
// its pending or running Slurm job, e.g. from slurm_jobs.h's active_slurm_jobs) into kOnSlurm.
void mark_slurm_jobs(std::vector<PlanEntry>& plan, const std::map<std::string, std::string>& active);

// Why a run that has checkpoints must not be resumed under `config` on `ranks` ranks (`segrun
// train` would refuse it: its config.toml differs in a key that shapes training, core/config.h's
// training_changes, or its checkpoints were written by another number of ranks,
// record.checkpoint_world, so the global batch would change), so that `sweep run` and `submit`
// leave it alone rather than fail it, or queue a job that fails. "" when it may be resumed (or has no checkpoint).
// `given_by` says where `config` and `ranks` come from, as describe_changes words it: "the sweep now" (a sweep's run),
// "this command" (`submit CONFIG`).
std::string resume_refusal(const RunRecord& record, const Config& config, int ranks, const std::string& given_by);

// The check `sweep run`, `sweep plan` and `submit SPEC` make before any run starts, so that no
// run starts only to fail: "<spec>: run <run's folder name>: data.store = <path>: no such store
// folder" for the first store that `config` (the run's resolved config) names and that is not a
// folder (core/config.h's missing_inputs); "" when they are all there.
std::string missing_input_of(const SweepSpec& spec, const PlannedRun& run, const Config& config);
// missing_input_of for every run of `plan` that a `sweep run` would start (not done, not left to
// a Slurm job), in plan order: `sweep run` refuses the first, `sweep plan` warns of them.
std::vector<std::string> missing_inputs_of_plan(const SweepSpec& spec, const std::vector<PlanEntry>& plan);
// Their first line, and how many more runs have one: for the warnings of `sweep plan` and of a dry run.
std::string describe_missing_inputs(const std::vector<std::string>& missing);

// Writes <dir>/overrides.json (creating dir). ConfigError when dir holds files of the user's own
// (require_new_empty_or_run_folder).
void write_run_manifest(const std::string& dir, const SweepSpec& spec, const PlannedRun& run,
                        const std::vector<std::string>& command);
// Same for a planned run, in entry.dir; a run to resume keeps the fingerprint recorded when it
// started, so that a run resumed under a changed config stays marked as such.
void write_run_manifest(const PlanEntry& entry, const SweepSpec& spec, const std::vector<std::string>& command);

}  // namespace segrun::sweeps
