#include "sweeps/registry.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/folder_lock.h"
#include "core/json_errors.h"
#include "core/format.h"
#include "core/output_paths.h"
#include "core/rank_logs.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// The highest n of the checkpoints/iter_<n>.pt files (where `--resume auto` starts), -1 when
// there is none. The engine's checkpoint naming (engine/checkpoint.h), read from the listing.
int64_t newest_checkpoint_iter(const fs::path& dir) {
  int64_t newest = -1;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return newest;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string digits = name.size() > 8 ? name.substr(5, name.size() - 8) : "";
    if (name.rfind("iter_", 0) != 0 || entry.path().extension() != ".pt" || digits.empty() || digits.size() > 18 ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      continue;
    newest = std::max<int64_t>(newest, std::stoll(digits));
  }
  return newest;
}

void numeric_fields(const Json& object, std::map<std::string, double>& out) {
  for (const auto& item : object.items())
    if (item.value().is_number()) out[item.key()] = item.value().get<double>();
}

}  // namespace

std::vector<std::string> sorted_subfolders(const std::string& runs_dir,
                                           const std::function<bool(const RunFolder&)>& keep) {
  std::error_code ec;
  if (!fs::is_directory(runs_dir, ec)) throw DataError(runs_dir + ": no such runs folder");
  std::vector<std::string> dirs;
  for (const auto& entry : fs::directory_iterator(runs_dir, ec))
    if (entry.is_directory() && keep(RunFolder(entry.path().string()))) dirs.push_back(entry.path().string());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

void for_each_metrics_record(const std::string& metrics_path, const std::function<void(const Json&)>& visit) {
  std::istringstream in(read_file(metrics_path));
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json record;
    try {
      record = Json::parse(line);
    } catch (const Json::exception&) {
      // A line cut by a crash at the end of the file is expected; one inside is corruption.
      if (in.peek() == std::char_traits<char>::eof()) break;
      throw DataError(metrics_path + ":" + std::to_string(number) + ": not JSON");
    }
    if (!record.is_object()) throw DataError(metrics_path + ":" + std::to_string(number) + ": not a JSON object");
    visit(record);
  }
}

std::string describe_run_state(const RunRecord& run) {
  if (run.state == RunState::kDone && !run.result_error.empty())
    return "done (result.json unreadable; sweep run or train --resume auto evaluates it)";
  if (run.state == RunState::kDone && !run.has_result)
    return "done (no result.json: train --resume auto, or sweep run, evaluates it again)";
  if (run.state != RunState::kRunning || !run.holder) return to_string(run.state);
  if (!run.holder->empty()) return "running (" + *run.holder + ")";
  return "stale: the status says running but no process trains the run (killed?); continue it with " +
         RunFolder(run.dir).resume_command();
}

int64_t run_progress(const RunRecord& run) {
  if (run.state == RunState::kDone && run.result.count("iterations"))
    return static_cast<int64_t>(run.result.at("iterations"));
  return std::max<int64_t>({0, run.last_iter, run.checkpoint_iter});
}

RunRecord read_run(const std::string& dir_text) {
  RunRecord r;
  r.dir = dir_text;
  const RunFolder folder(dir_text);
  const fs::path manifest = folder.overrides_path();
  if (path_exists(manifest)) {
    try {
      Json j = Json::parse(read_file(manifest.string()));
      r.id = j.value("id", "");
      r.sweep = j.value("sweep", "");
      r.seed = j.value("seed", uint64_t{0});
      r.fingerprint = j.value("fingerprint", "");
      // Written before float keys' integers were canonicalised (model.dropout "0"): read as "0.0".
      for (const auto& item : j.at("overrides").items())
        r.overrides[item.key()] = canonical_for_key(item.key(), item.value().get<std::string>());
    } catch (const Json::exception& e) {
      throw DataError(manifest.string() + ": not a segrun overrides.json (" + json_error_text(e.what()) +
                      "); repair the file, or move its run folder away");
    }
  }
  // A status file that names no state (a power loss's NUL bytes) makes the run a failed one, which
  // the plan resumes or retries (the trainer then rewrites it): it must not stop the whole sweep.
  RunStatus status;
  try {
    status = folder.read_status();
  } catch (const DataError& e) {
    std::error_code ec;
    if (fs::is_directory(folder.status_path(), ec)) throw;  // no status can be written there either
    status = {RunState::kFailed, e.what()};
  }
  r.state = status.state;
  r.reason = status.reason;
  if (r.state == RunState::kRunning) r.holder = lock_holder(folder.lock_path());
  r.checkpoint_iter = newest_checkpoint_iter(folder.checkpoint_dir());
  r.has_checkpoint = r.checkpoint_iter >= 0;
  const std::string metrics = folder.metrics_path();
  if (path_exists(metrics)) {
    for_each_metrics_record(metrics, [&r](const Json& j) {
      if (j.contains("iter") && j["iter"].is_number_integer())
        r.last_iter = std::max(r.last_iter, j["iter"].get<int64_t>());
      if (j.value("mode", "") == "val") {
        r.last_val.clear();
        numeric_fields(j, r.last_val);
      }
    });
  }
  // An unreadable result.json leaves the run not finished, as one without (the trainer evaluates
  // it again), and says why: one such run must not stop the status and table of a whole sweep.
  const fs::path result = folder.result_path();
  Json j;
  r.result_error = folder.read_result(j);
  if (path_exists(result) && r.result_error.empty()) {
    numeric_fields(j, r.result);
    if (j.contains("per_class") && j["per_class"].is_object())
      for (const auto& item : j["per_class"].items())
        r.per_class[item.key()] = item.value().is_number() ? item.value().get<double>() : std::nan("");
    r.has_result = true;
    std::error_code ec;
    const fs::file_time_type written = fs::last_write_time(result, ec);
    if (!ec)
      r.result_written_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(written.time_since_epoch()).count();
  }
  if (r.has_checkpoint && !r.finished()) r.checkpoint_world = log::checkpoint_world_size(folder.log_dir());
  return r;
}

bool is_run_folder(const std::string& dir) {
  const RunFolder folder(dir);
  return path_exists(folder.config_path()) &&
         (path_exists(folder.metrics_path()) || path_exists(folder.result_path()) || path_exists(folder.status_path()));
}

std::vector<RunRecord> scan_runs(const std::string& runs_dir) {
  std::vector<RunRecord> out;
  for (const auto& d : sorted_subfolders(runs_dir, [](const RunFolder& f) { return path_exists(f.overrides_path()); }))
    out.push_back(read_run(d));
  return out;
}

bool is_store_key(const std::string& key) { return key == "data.store" || key == "data.val_store"; }

std::string canonical_store_value(const std::string& canonical) {
  const std::string path = display_value(canonical);
  if (path.empty()) return canonical;
  return canonical_value(Json(resolved_store_folder(path).string()).dump());  // a TOML basic string is a JSON string
}

std::vector<RunRecord> scan_trained_runs(const std::string& runs_dir) {
  std::vector<RunRecord> runs;
  std::vector<Overrides> configs;
  for (const auto& d : sorted_subfolders(runs_dir, [](const RunFolder& f) { return is_run_folder(f.root()); })) {
    runs.push_back(read_run(d));
    const std::string config_path = RunFolder(d).config_path();
    configs.push_back(flatten_config(read_file(config_path), config_path));
    // The global batch is not in config.toml (the number of ranks is a launch choice) but in
    // result.json; runs trained on different numbers of ranks differ by it like by a key.
    const auto global_batch = runs.back().result.find(kGlobalBatchKey);
    if (global_batch != runs.back().result.end())
      configs.back()[kGlobalBatchKey] = std::to_string(static_cast<int64_t>(global_batch->second));
    for (auto& [key, value] : configs.back())
      if (is_store_key(key)) value = canonical_store_value(value);
  }
  // Each key's values over the runs, "" where a run lacks it; a key with two or more differs.
  const auto value_in = [](const Overrides& config, const std::string& key) {
    const auto it = config.find(key);
    return it == config.end() ? std::string() : it->second;
  };
  std::map<std::string, std::set<std::string>> values_of;
  for (const Overrides& config : configs)
    for (const auto& entry : config) values_of[entry.first];
  for (auto& [key, values] : values_of)
    for (const Overrides& config : configs) values.insert(value_in(config, key));
  std::set<std::string> differing;
  for (const auto& [key, values] : values_of)
    if (values.size() > 1) differing.insert(key);
  differing.erase("train.seed");  // seeds are averaged over, as in a sweep
  // Keys that change no result (log.interval, data.on_corrupt...) tell runs apart only when no
  // other key does, and then the runs' names first. Runs of different stores (resolved above, so
  // that one store spelled two ways is one) are no repeats of one another: trained or scored on
  // other data, they stay apart, with their stores shown.
  std::set<std::string> results;
  for (const std::string& key : differing)
    if (changes_result(key) || is_store_key(key)) results.insert(key);
  if (!results.empty())
    differing = results;
  else if (differing.count("name"))
    differing = {"name"};
  for (size_t i = 0; i < runs.size(); ++i) {
    for (const std::string& key : differing) runs[i].overrides[key] = value_in(configs[i], key);
    const auto seed = configs[i].find("train.seed");
    if (seed == configs[i].end()) continue;
    char* end = nullptr;
    runs[i].seed = std::strtoull(seed->second.c_str(), &end, 10);
    SEGRUN_CHECK(std::isdigit(static_cast<unsigned char>(seed->second[0])) && *end == '\0', DataError,
                 RunFolder(runs[i].dir).config_path() << ": train.seed: not a non-negative integer: " << seed->second);
  }
  return runs;
}

std::string sweep_runs_dir(const SweepSpec& spec, const std::string& override_dir) {
  const std::string dir = !override_dir.empty()    ? override_dir
                          : !spec.runs_dir.empty() ? spec.runs_dir
                                                   : (fs::path("runs") / spec.name).string();
  std::error_code ec;
  const std::string named = (override_dir.empty() ? spec.path + ": runs_dir " : std::string("--runs-dir ")) + dir;
  SEGRUN_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), ConfigError, named << ": exists and is not a folder");
  // Runs written into a store or into one run's folder would mix with what is there.
  SEGRUN_CHECK(!fs::exists(fs::path(dir) / "manifest.json", ec), ConfigError,
               named << ": is a data store (it holds manifest.json); a sweep's runs need a folder of their own");
  SEGRUN_CHECK(
      !RunFolder(dir).holds_run_files(), ConfigError,
      named << ": is one run's folder; a sweep's runs need a folder of their own (e.g. runs/" << spec.name << ")");
  return dir;
}

std::string to_string(PlanAction action) {
  switch (action) {
    case PlanAction::kNew: return "new";
    case PlanAction::kReuse: return "done";
    case PlanAction::kResume: return "resume";
    case PlanAction::kRetry: return "retry";
    case PlanAction::kOnSlurm: return "on slurm";
  }
  return "?";
}

namespace {

// The overrides that make a run's id: all but the scheduling keys.
Overrides computing_overrides(const Overrides& overrides) {
  Overrides out;
  for (const auto& [key, value] : overrides)
    if (!is_scheduling_key(key)) out.emplace(key, value);
  return out;
}

// The folder of a run made before float keys' integers were canonicalised (`"model.dropout" =
// [0, ...]` gave the id of "model.dropout=0"): a folder of runs_dir whose overrides.json, read
// canonically, has the run's overrides and seed. "" when there is none. `scanned` caches the scan.
std::string respelled_run_dir(const PlannedRun& run, const std::string& runs_dir,
                              std::optional<std::vector<RunRecord>>& scanned) {
  std::error_code ec;
  if (!fs::is_directory(runs_dir, ec)) return "";
  if (!scanned) {
    try {
      scanned = scan_runs(runs_dir);
    } catch (const DataError&) {  // a corrupt folder of another run: its own plan entry says so
      scanned.emplace();
    }
  }
  const Overrides wanted = computing_overrides(run.overrides);
  for (const RunRecord& r : *scanned)
    if (r.seed == run.seed && computing_overrides(r.overrides) == wanted) return r.dir;
  return "";
}

}  // namespace

std::string PlanEntry::folder_name() const { return fs::path(dir).filename().string(); }

namespace {

// Whether a run folder's result would differ under the config the sweep now gives it: its
// config.toml against that config (core/config_changes.h's result_changes, so a key added to the schema
// since, or a float written another way, is no change); the fingerprint in overrides.json where
// the folder has no config.toml. Sets entry.config_change to the description.
bool result_changed(PlanEntry& entry, const SweepSpec& spec) {
  const RunFolder run(entry.dir);
  if (!path_exists(run.config_path()))
    return !entry.record.fingerprint.empty() && entry.record.fingerprint != entry.run.fingerprint;
  Config ran;
  try {
    ran = load_config(run.config_path());
  } catch (const ConfigError& e) {
    entry.config_change = std::string("its config.toml no longer reads: ") + e.what();
    return true;
  }
  entry.config_change =
      describe_changes(result_changes(ran, load_config(spec.base, entry.run.train_args())), "the sweep now");
  return !entry.config_change.empty();
}

}  // namespace

std::vector<PlanEntry> plan_sweep(const SweepSpec& spec, const std::string& runs_dir) {
  std::vector<PlanEntry> out;
  std::optional<std::vector<RunRecord>> scanned;
  for (auto& run : expand_sweep(spec)) {
    PlanEntry e;
    e.dir = (fs::path(runs_dir) / run.dir_name).string();
    if (!path_exists(RunFolder(e.dir).overrides_path())) {
      const std::string respelled = respelled_run_dir(run, runs_dir, scanned);
      if (!respelled.empty()) e.dir = respelled;
    }
    e.record = read_run(e.dir);
    e.run = std::move(run);
    const bool changed = (e.record.state == RunState::kDone || e.record.has_checkpoint) && result_changed(e, spec);
    // A run marked done without its result.json is evaluated again from its final checkpoint
    // (`train --resume auto` does so), or trained again when it has none.
    if (e.record.finished()) {
      e.action = PlanAction::kReuse;
      e.config_changed = changed;
    } else if (e.record.has_checkpoint) {
      e.action = PlanAction::kResume;
      e.config_changed = changed;
      if (e.record.checkpoint_world > 0 && e.record.checkpoint_world != spec.ranks)
        e.ranks_change =
            std::to_string(e.record.checkpoint_world) + " rank(s), [resources] ranks = " + std::to_string(spec.ranks);
      if (changed || !e.ranks_change.empty()) {
        try {
          e.refusal = resume_refusal(e.record, load_config(spec.base, e.run.train_args()), spec.ranks, "the sweep now");
        } catch (const ConfigError& error) {  // its config.toml no longer reads: train would refuse it too
          e.refusal = error.what();
        }
      }
    } else if (e.record.state == RunState::kFailed || e.record.state == RunState::kDone) {
      e.action = PlanAction::kRetry;
    } else {
      e.action = PlanAction::kNew;
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::string resume_refusal(const RunRecord& record, const Config& config, int ranks, const std::string& given_by) {
  const RunFolder run(record.dir);
  if (!record.has_checkpoint) return "";
  if (path_exists(run.config_path())) {
    const std::vector<ConfigChange> changes = training_changes(load_config(run.config_path()), config);
    if (!changes.empty())
      return run.config_path() + ": " + describe_changes(changes, given_by) +
             "; resuming it would change what it computes: delete the run folder to start it afresh";
  }
  const int trained = record.checkpoint_world;
  if (trained <= 0 || trained == ranks) return "";
  const int64_t per_rank = static_cast<int64_t>(config.data.batch_per_rank) * config.train.accumulate;
  return segrun::format(
      "{}: its checkpoints were written by {} rank(s) (global batch {}), {} runs it on {} (global batch {}): a run "
      "resumes only at its global batch: give it {} rank(s) to finish it, or delete the run folder to start it afresh",
      run.root(), trained, trained * per_rank, given_by, ranks, ranks * per_rank, trained);
}

std::string missing_input_of(const SweepSpec& spec, const PlannedRun& run, const Config& config) {
  const std::vector<std::string> missing = missing_inputs(config);
  return missing.empty() ? "" : spec.path + ": run " + run.dir_name + ": " + missing.front();
}

std::vector<std::string> missing_inputs_of_plan(const SweepSpec& spec, const std::vector<PlanEntry>& plan) {
  std::vector<std::string> out;
  for (const PlanEntry& e : plan) {
    if (e.action == PlanAction::kReuse || e.action == PlanAction::kOnSlurm) continue;
    std::string missing = missing_input_of(spec, e.run, load_config(spec.base, e.run.train_args()));
    if (!missing.empty()) out.push_back(std::move(missing));
  }
  return out;
}

std::string describe_missing_inputs(const std::vector<std::string>& missing) {
  if (missing.empty()) return "";
  return missing.front() + (missing.size() > 1 ? " (and " + std::to_string(missing.size() - 1) + " more run(s))" : "");
}

void mark_slurm_jobs(std::vector<PlanEntry>& plan, const std::map<std::string, std::string>& active) {
  for (PlanEntry& e : plan) {
    const auto job = active.find(e.dir);
    if (job == active.end() || e.action == PlanAction::kReuse) continue;
    e.action = PlanAction::kOnSlurm;
    e.slurm_job = job->second;
  }
}

void write_run_manifest(const PlanEntry& entry, const SweepSpec& spec, const std::vector<std::string>& command) {
  PlannedRun run = entry.run;
  // A run resumed under a changed config keeps the fingerprint it started with: once done, its
  // plan still says that its base config changed.
  if (entry.action == PlanAction::kResume && !entry.record.fingerprint.empty())
    run.fingerprint = entry.record.fingerprint;
  write_run_manifest(entry.dir, spec, run, command);
}

void write_run_manifest(const std::string& dir, const SweepSpec& spec, const PlannedRun& run,
                        const std::vector<std::string>& command) {
  // A planned run's folder that holds files of the user's own is not taken over.
  require_new_empty_or_run_folder("sweep " + spec.name + ":", dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir + ": cannot create run directory: " + ec.message());
  Json j;
  j["sweep"] = spec.name;
  j["id"] = run.id;
  j["seed"] = run.seed;
  j["overrides"] = Json::object();
  for (const auto& [key, value] : run.overrides) j["overrides"][key] = value;
  j["base"] = spec.base;
  j["fingerprint"] = run.fingerprint;
  j["command"] = command;
  write_file_atomic(RunFolder(dir).overrides_path(), j.dump(2) + "\n");
}

}  // namespace segrun::sweeps
