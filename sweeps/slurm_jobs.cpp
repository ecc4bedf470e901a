#include "sweeps/slurm_jobs.h"

#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <system_error>
#include <utility>

#include "cluster/job_record.h"
#include "cluster/job_script.h"
#include "cluster/local_launch.h"
#include "cluster/slurm_client.h"
#include "core/atomic_file.h"
#include "core/config_changes.h"
#include "build_config.h"
#include "core/error.h"
#include "core/output_paths.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/run_folder.h"
#include "sweeps/spec.h"
#include "sweeps/table.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;

std::string absolute(const std::string& path) { return fs::absolute(path).lexically_normal().string(); }

// Creates dir (and parents) and makes sure nobody but its owner and group can write to it.
void make_private_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir + ": cannot create: " + ec.message());
  fs::permissions(dir, fs::perms::others_write | fs::perms::group_write, fs::perm_options::remove, ec);
  if (ec) throw IoError(dir + ": cannot set permissions: " + ec.message());
}

void write_with_mode(const std::string& path, const std::string& content, fs::perms mode) {
  write_file_atomic(path, content);
  std::error_code ec;
  fs::permissions(path, mode, fs::perm_options::replace, ec);
  if (ec) throw IoError(path + ": cannot set permissions: " + ec.message());
}

std::vector<std::pair<std::string, std::string>> parse_exports(const std::vector<std::string>& exports) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : exports) {
    const auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0) throw ConfigError("--export '" + e + "': expected NAME=VALUE");
    out.emplace_back(e.substr(0, eq), e.substr(eq + 1));
  }
  return out;
}

std::string next_submission_name(const std::string& slurm_dir) {
  for (int k = 1;; ++k) {
    const std::string name = "submit-" + std::to_string(k);
    if (!path_exists(slurm_dir + "/" + name + ".sbatch")) return name;
  }
}

// The first cluster.slurm key whose value differs between two runs' configs, "" when none: every
// key of the schema is compared, so one added to it counts too. (The spec parser refuses
// cluster.* in [grid] and [[variants]]; this guards the one array, one set of resources.)
std::string first_slurm_difference(const Config& a, const Config& b) {
  for (const ConfigChange& change : config_changes(a, b))
    if (change.key.rfind("cluster.slurm.", 0) == 0) return change.key;
  return "";
}

}  // namespace

void SlurmOverrides::apply(SlurmConfig& s) const {
  if (partition) s.partition = *partition;
  if (account) s.account = *account;
  if (qos) s.qos = *qos;
  if (time) s.time = *time;
  if (mem) s.mem = *mem;
  if (constraint) s.constraint = *constraint;
  if (launcher) s.launcher = *launcher;
  if (mpi) s.mpi = *mpi;
  if (nodes) s.nodes = *nodes;
  if (gpus_per_node) s.gpus_per_node = *gpus_per_node;
  if (cpus_per_task) s.cpus_per_task = *cpus_per_task;
  if (tasks_per_node) s.tasks_per_node = *tasks_per_node;
  if (max_parallel) s.max_parallel = *max_parallel;
  if (signal_grace_s) s.signal_grace_s = *signal_grace_s;
}

// The sweep spec names a base config; an experiment config never has a top-level `base`.
bool is_sweep_spec(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw ConfigError(path + ": no such config or sweep spec");
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    if (line[start] == '[') return false;  // top-level keys end at the first table
    const std::string key = line.substr(start, line.find_first_of(" \t=", start) - start);
    if (key == "base" || key == "\"base\"") return true;
  }
  return false;
}

// A job this segrun's ranks cannot run as asked, refused before it waits in the queue: dist.backend
// = "nccl" in a build without NCCL; a GPU job whose ranks run a segrun built without CUDA (a
// CPU-only LibTorch): with dist.device = "cuda" every rank would fail at its start (refused); with
// "auto" the ranks would train on the nodes' CPUs while the GPUs they hold idle (a warning).
// `where(key)` names what set the key: the config or its override, or the sweep's run.
void check_build_runs(const SlurmConfig& slurm, const Config& config,
                      const std::function<std::string(const std::string& key)>& where) {
  if (config.dist.backend == "nccl" && !SEGRUN_WITH_NCCL)
    throw ConfigError(where("dist.backend") + ": dist.backend = \"nccl\" but this segrun (" +
                      cluster::self_executable() +
                      ") is built without NCCL: every rank would fail at its start (docs/gpu.md builds it with NCCL)");
  if (slurm.gpus_per_node == 0 || SEGRUN_WITH_CUDA) return;
  const std::string what = where("dist.device") +
                           ": cluster.slurm.gpus_per_node = " + std::to_string(slurm.gpus_per_node) +
                           " but this segrun (" + cluster::self_executable() + ") is built without CUDA";
  if (config.dist.device == "cuda")
    throw ConfigError(what +
                      ": with dist.device = \"cuda\" every rank would fail at its start; build segrun against "
                      "a CUDA LibTorch (docs/gpu.md)");
  if (config.dist.device == "auto")
    log::warn(
        "{}: its ranks will train on the nodes' CPUs while the GPUs idle (docs/gpu.md builds segrun with CUDA; "
        "dist.device = \"cpu\" says it is meant)",
        what);
}

int submit_run(const SubmitRequest& req, std::ostream& out) {
  Config config = load_config(req.target, req.overrides);
  // Refused here, not after the job has waited in the queue (the stores are on a shared file system).
  require_inputs(config);
  SlurmConfig slurm = config.cluster.slurm;
  req.slurm.apply(slurm);
  check_build_runs(slurm, config, [&](const std::string& key) { return origin_of(config, key); });
  const std::string given_dir = req.run_dir.empty() ? default_run_dir(config) : req.run_dir;
  // As train: a folder of the user's own files never becomes a run folder.
  require_new_empty_or_run_folder("--run-dir", given_dir);
  const std::string run_dir = absolute(given_dir);
  const std::string name = fs::path(run_dir).filename().string();
  if (!cluster::is_safe_name(name))
    throw ConfigError("run directory '" + run_dir + "': its name may only contain [A-Za-z0-9._-]");

  cluster::JobScriptOptions script;
  script.slurm = slurm;
  script.job_name = name;
  script.ranks = req.ranks;
  script.program = cluster::self_executable();
  script.env = parse_exports(req.exports);
  script.description = "run " + name + " from " + absolute(req.target);
  script.run_dir = run_dir;
  script.output = cluster::kJobLogFile;
  const std::string text = cluster::render_job_script(script);
  const std::string script_path = (fs::path(run_dir) / "job.sbatch").string();
  // What submitting would refuse, a dry run refuses too, all but the queue's answer (a dry run may
  // be made off the cluster). Its standard output is the job script alone.
  const RunRecord record = read_run(run_dir);
  if (record.finished()) {
    (req.dry_run ? std::cerr : out) << run_dir
                                    << " is done already (delete it or choose another --run-dir to train again)\n";
    return 0;
  }
  if (!req.dry_run) {
    const auto jobs = cluster::recorded_jobs({run_dir});
    cluster::require_known_states(jobs, "nothing submitted; try again when squeue answers");
    if (!jobs.empty() && jobs.begin()->second.slurm && cluster::is_active(*jobs.begin()->second.slurm))
      throw ClusterError(run_dir + ": already queued as Slurm job " + jobs.begin()->second.record.job_id + " (" +
                         cluster::describe_job(*jobs.begin()->second.slurm) + "); `segrun cancel " + run_dir +
                         "` stops it");
  }
  const int ranks = cluster::resolve_layout(slurm, req.ranks).ntasks;
  const std::string refusal = resume_refusal(record, config, ranks, "this command");
  if (!refusal.empty()) throw ConfigError(refusal);
  if (req.dry_run) {
    out << text;
    std::cerr << "dry run: would write " << script_path << " and run `sbatch --parsable` in " << run_dir << "\n";
    return 0;
  }
  make_private_dir(run_dir);
  write_file_atomic(RunFolder(run_dir).config_path(), to_toml(config));
  if (record.state == RunState::kNew || record.state == RunState::kFailed) write_run_status(run_dir, RunState::kQueued);
  write_with_mode(script_path, text, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  std::string job_id;
  try {
    job_id = cluster::sbatch_submit(script_path, run_dir);
  } catch (const std::exception& e) {
    // Not queued after all: `segrun status` must not say it is.
    if (record.state == RunState::kNew || record.state == RunState::kFailed)
      write_run_status(run_dir, RunState::kFailed, "sbatch failed: " + first_line(e.what()));
    throw;
  }
  const std::string log = (fs::path(run_dir) / cluster::kJobLogFile).string();
  cluster::write_job_record(run_dir, job_id, script_path, log);
  out << "submitted " << name << " as Slurm job " << job_id << " (" << ranks << " rank(s)); log " << log
      << "; status: segrun status " << run_dir << "\n";
  return 0;
}

int submit_sweep(const SubmitRequest& req, std::ostream& out) {
  const SweepSpec spec = load_sweep_spec(req.target);
  const std::string runs_dir = absolute(sweep_runs_dir(spec, req.runs_dir));
  // A local `sweep run` holds the runs folder while it trains: submitting then would train its
  // runs twice at once. Held until the job records are written, so that a local run started
  // afterwards sees the Slurm jobs (run_sweep leaves their runs to them).
  std::optional<RunsLock> lock;
  if (!req.dry_run) {
    make_private_dir(runs_dir);
    lock.emplace(runs_dir,
                 "a local `segrun sweep run` is training this sweep's runs; let it finish (or stop it with Ctrl-C) "
                 "before submitting them to Slurm");
  }
  const auto plan = plan_sweep(spec, runs_dir);
  if (plan.empty()) throw ConfigError(spec.path + ": the sweep has no runs");

  // Every run's resolved config; the Slurm settings must agree (one array, one set of resources).
  // A big sweep takes a while to resolve and write: show it (core/progress.h).
  constexpr size_t kBigSweep = 50;
  std::vector<Config> configs;
  Progress resolving("submit " + spec.name + ": resolving configs", static_cast<int64_t>(plan.size()), "runs",
                     plan.size() >= kBigSweep);
  for (const auto& e : plan) {
    configs.push_back(load_config(spec.base, e.run.train_args()));
    resolving.advance();
  }
  resolving.finish();
  for (size_t i = 0; i < plan.size(); ++i) {
    const std::string missing = missing_input_of(spec, plan[i].run, configs[i]);
    if (!missing.empty()) throw ConfigError(missing);
  }
  for (size_t i = 1; i < plan.size(); ++i) {
    const std::string differing = first_slurm_difference(configs[0], configs[i]);
    if (!differing.empty())
      throw ConfigError(spec.path + ": " + differing + " differs between runs " + plan[0].run.dir_name + " and " +
                        plan[i].run.dir_name + " (set cluster.slurm.* in [fixed], not in [grid] or [[variants]])");
  }
  SlurmConfig slurm = configs[0].cluster.slurm;
  req.slurm.apply(slurm);
  // Every run that would fail is refused; the warning is said once, for the first run it concerns.
  bool warned = false;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (configs[i].dist.device == "auto" && std::exchange(warned, true)) continue;
    check_build_runs(slurm, configs[i],
                     [&](const std::string&) { return spec.path + ": run " + plan[i].run.dir_name; });
  }
  if (!cluster::is_safe_name(spec.name))
    throw ConfigError(spec.path + ": sweep name '" + spec.name + "' is not [A-Za-z0-9._-]");
  // resources.ranks defaults to 1; on GPU nodes (or with explicit tasks per node) the layout decides.
  const int ranks = req.ranks > 0                                                                ? req.ranks
                    : (spec.ranks == 1 && (slurm.gpus_per_node > 0 || slurm.tasks_per_node > 0)) ? 0
                                                                                                 : spec.ranks;
  const cluster::TaskLayout layout = cluster::resolve_layout(slurm, ranks);

  std::vector<std::string> dirs;
  for (const auto& e : plan) dirs.push_back(e.dir);
  const auto jobs = cluster::recorded_jobs(dirs);
  {
    // Only the runs this would submit: a done run is skipped whatever its job's state.
    std::map<std::string, cluster::RecordedJob> to_submit;
    for (const auto& e : plan)
      if (e.action != PlanAction::kReuse && jobs.count(e.dir)) to_submit.emplace(e.dir, jobs.at(e.dir));
    try {
      cluster::require_known_states(to_submit, "nothing submitted; try again when squeue answers");
    } catch (const ClusterError& e) {
      if (!req.dry_run) throw;
      std::cerr << "warning: " << e.what() << "\n";  // a dry run still shows the script
    }
  }
  std::vector<size_t> todo;
  int done = 0, queued = 0, refused = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].action == PlanAction::kReuse) {
      ++done;
      continue;
    }
    auto it = jobs.find(plan[i].dir);
    if (it != jobs.end() && it->second.slurm && cluster::is_active(*it->second.slurm)) {
      ++queued;
      (req.dry_run ? std::cerr : out) << plan[i].folder_name() << ": already queued as Slurm job "
                                      << it->second.record.job_id << " (" << cluster::describe_job(*it->second.slurm)
                                      << ")\n";
      continue;
    }
    const std::string refusal = resume_refusal(plan[i].record, configs[i], layout.ntasks, "the sweep now");
    if (!refusal.empty()) {
      ++refused;
      (req.dry_run ? std::cerr : out) << "not submitted: " << refusal << "\n";
      continue;
    }
    todo.push_back(i);
  }

  const std::string slurm_dir = (fs::path(runs_dir) / "slurm").string();
  const std::string submission = next_submission_name(slurm_dir);
  const std::string script_path = (fs::path(slurm_dir) / (submission + ".sbatch")).string();
  const std::string tasks_path = (fs::path(slurm_dir) / (submission + ".tasks")).string();
  // The folders the plan found: a run begun under an older folder name (another slug or id
  // spelling) is resumed there, not begun again in a folder of today's name.
  std::vector<std::string> names;
  for (size_t i : todo) names.push_back(plan[i].folder_name());

  cluster::JobScriptOptions script;
  script.slurm = slurm;
  script.job_name = spec.name;
  script.ranks = layout.ntasks;
  script.program = cluster::self_executable();
  script.env = parse_exports(req.exports);
  script.description = "sweep " + spec.name + " (" + absolute(spec.path) + "), " + std::to_string(todo.size()) +
                       " run(s) of " + std::to_string(layout.ntasks) + " rank(s)";
  script.runs_dir = runs_dir;
  script.tasks_file = tasks_path;
  script.array_size = static_cast<int>(std::max<size_t>(1, todo.size()));
  script.output = submission + "_%A_%a.out";
  const std::string text = cluster::render_job_script(script);
  const std::string tasks = cluster::render_tasks_file(names);

  // With --dry-run stdout carries only the script (segrun submit ... --dry-run > job.sbatch).
  (req.dry_run ? std::cerr : out) << "sweep " << spec.name << ": " << plan.size() << " runs, " << done << " done, "
                                  << queued << " already queued, "
                                  << (refused > 0 ? std::to_string(refused) + " not submitted (see above), " : "")
                                  << todo.size() << " to submit; runs in " << runs_dir << "\n";
  // Runs left as they are (not submitted) make the command fail, as `sweep run` does.
  const int code = refused > 0 ? 1 : 0;
  if (req.dry_run && todo.empty()) {
    std::cerr << "dry run: nothing to submit\n";
    return code;
  }
  if (req.dry_run) {
    out << text;
    std::cerr << "dry run: would write " << script_path << " and " << tasks_path << ":\n";
    for (size_t t = 0; t < names.size(); ++t) std::cerr << "  task " << t << ": " << names[t] << "\n";
    return code;
  }
  if (todo.empty()) return code;

  make_private_dir(runs_dir);
  make_private_dir(slurm_dir);
  const std::string program = cluster::self_executable();
  Progress writing("submit " + spec.name + ": writing run folders", static_cast<int64_t>(todo.size()), "runs",
                   todo.size() >= kBigSweep);
  for (size_t i : todo) {
    const PlanEntry& e = plan[i];
    make_private_dir(e.dir);
    std::vector<std::string> command{program,    "train", RunFolder(e.dir).config_path(), "--run-dir", e.dir,
                                     "--resume", "auto"};
    write_run_manifest(e, spec, command);
    write_file_atomic(RunFolder(e.dir).config_path(), to_toml(configs[i]));
    if (e.record.state == RunState::kNew) write_run_status(e.dir, RunState::kQueued);
    writing.advance();
  }
  writing.finish();
  write_with_mode(tasks_path, tasks, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  write_with_mode(script_path, text, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  const std::string job_id = cluster::sbatch_submit(script_path, slurm_dir);
  for (size_t t = 0; t < todo.size(); ++t) {
    const std::string& dir = plan[todo[t]].dir;
    cluster::write_job_record(dir, job_id + "_" + std::to_string(t), script_path,
                              (fs::path(dir) / cluster::kJobLogFile).string());
  }
  out << "submitted " << todo.size() << " run(s) as Slurm job array " << job_id << " (tasks 0-" << todo.size() - 1;
  if (slurm.max_parallel > 0) out << ", at most " << slurm.max_parallel << " at once";
  out << "); script " << script_path << "; status: segrun sweep status " << spec.path << "\n";
  return code;
}

int print_run_status(const std::string& run_dir_arg, std::ostream& out) {
  std::error_code ec;
  if (!fs::is_directory(run_dir_arg, ec)) {
    if (fs::is_regular_file(run_dir_arg, ec)) {
      bool spec = false;
      try {
        spec = is_sweep_spec(run_dir_arg);
      } catch (const ConfigError&) {  // not TOML: a file, all the same
      }
      throw ConfigError(run_dir_arg +
                        (spec ? ": a sweep spec, not a run directory (segrun sweep status " + run_dir_arg + ")"
                              : ": a file, not a run directory"));
    }
    throw ConfigError(run_dir_arg + ": no such run directory");
  }
  // A folder of other files (a store, a mistyped path) is no run that has not started: a run
  // folder holds segrun's files from its first moment (train, sweep run, submit), as train decides.
  // (A status file naming no state is read below, and named in the error.)
  const RunFolder folder(run_dir_arg);
  if (!folder.holds_run_files() && !path_exists(folder.status_path()))
    throw ConfigError(run_dir_arg + ": not a run folder (no status, overrides.json, checkpoint or rank log)");
  const std::string run_dir = absolute(run_dir_arg);
  const RunRecord r = read_run(run_dir);
  const auto jobs = cluster::recorded_jobs({run_dir});
  const cluster::SlurmJobInfo* job = nullptr;
  std::string job_id, log;
  if (!jobs.empty()) {
    job_id = jobs.begin()->second.record.job_id;
    log = jobs.begin()->second.record.log;
    if (jobs.begin()->second.slurm) job = &*jobs.begin()->second.slurm;
  }
  int64_t iters = -1;
  if (fs::exists(RunFolder(run_dir).config_path(), ec)) {
    try {
      iters = load_config(RunFolder(run_dir).config_path()).train.iters;
    } catch (const ConfigError&) {
    }
  }
  std::string state = cluster::merge_run_state(r.state, r.reason, job);
  if (state == to_string(RunState::kRunning) || state == to_string(RunState::kDone)) state = describe_run_state(r);
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"run", run_dir});
  rows.push_back({"state", state});
  rows.push_back({"progress", std::to_string(run_progress(r)) + "/" + (iters >= 0 ? std::to_string(iters) : "?")});
  std::string metric = "-";
  if (r.has_result && r.result.count("mIoU"))
    metric = "mIoU " + format_number(r.result.at("mIoU"), 2, "-");
  else if (r.last_val.count("mIoU"))
    metric = "mIoU " + format_number(r.last_val.at("mIoU"), 2, "-") + " (last evaluation)";
  rows.push_back({"metric", metric});
  rows.push_back({"checkpoint", r.has_checkpoint ? "yes" : "no"});
  std::string job_text = job_id.empty() ? "- (not submitted to Slurm)" : job_id;
  if (job)
    job_text += " (slurm " + cluster::describe_job(*job) + (job->nodes.empty() ? "" : " on " + job->nodes) + ")";
  else if (!jobs.empty() && !jobs.begin()->second.unknown_because.empty())
    job_text += " (state unknown: " + jobs.begin()->second.unknown_because + ")";
  else if (!job_id.empty())
    job_text += " (no longer known to squeue/sacct)";
  rows.push_back({"job", job_text});
  rows.push_back({"log", log.empty() ? "-" : log});
  for (const auto& row : rows) out << row[0] << std::string(12 - row[0].size(), ' ') << row[1] << "\n";
  return 0;
}

int cancel_jobs(const std::string& target, const std::string& runs_dir_override, std::ostream& out) {
  std::vector<std::string> dirs;
  std::error_code ec;
  if (fs::is_directory(target, ec)) {
    if (fs::exists(fs::path(target) / cluster::kJobRecordFile, ec) || fs::exists(RunFolder(target).status_path(), ec)) {
      dirs.push_back(absolute(target));
    } else {
      // A sweep's runs (overrides.json), and runs submitted one by one (`submit CONFIG --run-dir
      // runs/x`: no overrides.json, but their job record).
      const auto run_or_job = [](const RunFolder& f) {
        return path_exists(f.overrides_path()) || path_exists(f.root() + "/" + cluster::kJobRecordFile);
      };
      for (const auto& dir : sorted_subfolders(target, run_or_job)) dirs.push_back(absolute(dir));
      SEGRUN_CHECK(!dirs.empty(), ConfigError,
                   target << ": no run here: neither a run folder nor a folder of runs (give a run folder, a sweep's "
                             "runs folder or its spec)");
    }
  } else {
    const SweepSpec spec = load_sweep_spec(target);
    for (const auto& e : plan_sweep(spec, absolute(sweep_runs_dir(spec, runs_dir_override)))) dirs.push_back(e.dir);
  }
  const auto jobs = cluster::recorded_jobs(dirs);
  cluster::require_known_states(jobs, "nothing cancelled; try again when squeue answers");
  std::vector<std::string> ids;
  for (const auto& [dir, entry] : jobs)
    if (entry.slurm && cluster::is_active(*entry.slurm)) ids.push_back(entry.record.job_id);
  if (ids.empty()) {
    out << "nothing to cancel: no pending or running Slurm job for " << dirs.size() << " run(s)\n";
    return 0;
  }
  cluster::scancel(ids);
  out << "cancelled " << ids.size() << " Slurm job(s):";
  for (const auto& id : ids) out << " " << id;
  out << "\n(running ranks checkpoint before they stop: submit again to resume)\n";
  return 0;
}

std::map<std::string, std::string> active_slurm_jobs(const std::vector<PlanEntry>& plan) {
  std::vector<std::string> dirs;
  for (const auto& e : plan) dirs.push_back(e.dir);
  std::map<std::string, std::string> out;
  for (const auto& [dir, entry] : cluster::recorded_jobs(dirs)) {
    if (entry.slurm && cluster::is_active(*entry.slurm))
      out[dir] = entry.record.job_id + " (" + cluster::describe_job(*entry.slurm) + ")";
    else if (!entry.unknown_because.empty())  // may still run: left to it, as a live job is
      out[dir] = entry.record.job_id + " (may still be pending or running: " + entry.unknown_because + ")";
  }
  return out;
}

std::map<std::string, SchedulerState> slurm_states_of(const std::vector<PlanEntry>& plan) {
  std::vector<std::string> dirs;
  for (const auto& e : plan) dirs.push_back(e.dir);
  std::map<std::string, SchedulerState> out;
  for (const auto& [dir, entry] : cluster::recorded_jobs(dirs)) {
    const RunRecord* record = nullptr;
    for (const auto& e : plan)
      if (e.dir == dir) record = &e.record;
    SchedulerState state;
    state.state = cluster::merge_run_state(record ? record->state : RunState::kNew, record ? record->reason : "",
                                           entry.slurm ? &*entry.slurm : nullptr);
    if (!entry.unknown_because.empty() && (!record || record->state != RunState::kDone))
      state.state += " [slurm: state unknown: " + entry.unknown_because + "]";
    state.job = entry.record.job_id;
    state.log = entry.record.log;
    out[dir] = state;
  }
  return out;
}

}  // namespace segrun::sweeps
