// `segrun submit | status | cancel`, `sweep run --on slurm`, `sweep status` with Slurm jobs, and
// `launch` inside an allocation: glue between the CLI, sweeps/ (plans, run directories) and
// cluster/ (job scripts, Slurm's commands).
#include "launcher/cluster_commands.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "cluster/job_script.h"
#include "cluster/local_launch.h"
#include "cluster/slurm_client.h"
#include "cluster/slurm_env.h"
#include "core/atomic_file.h"
#include "core/config.h"
#include "core/error.h"
#include "core/process.h"
#include "core/log.h"
#include "core/run_folder.h"
#include "launcher/commands.h"
#include "sweeps/spec.h"
#include "sweeps/table.h"

namespace segrun::launcher {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

constexpr const char* kJobRecord = "slurm_job.json";
constexpr const char* kRunLog = "slurm.log";

// Resource flags of the command line; unset ones keep the config's value.
struct SlurmFlags {
  std::optional<std::string> partition, account, qos, time, mem, constraint, launcher, mpi;
  std::optional<int> nodes, gpus_per_node, cpus_per_task, tasks_per_node, max_parallel, signal_grace_s;

  void apply(SlurmConfig& s) const {
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
};

struct SubmitRequest {
  std::string target;
  std::vector<std::string> overrides;
  SlurmFlags flags;
  int ranks = 0;
  std::vector<std::string> exports;  // KEY=VALUE
  std::string run_dir;
  std::string runs_dir;
  bool dry_run = false;
};

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

std::string now_text() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", std::localtime(&t));
  return buf;
}

struct JobRecord {
  std::string job_id;
  std::string log;
};

std::optional<JobRecord> read_job_record(const std::string& run_dir) {
  const fs::path path = fs::path(run_dir) / kJobRecord;
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  try {
    const Json j = Json::parse(read_file(path.string()));
    return JobRecord{j.at("job_id").get<std::string>(), j.value("log", "")};
  } catch (const Json::exception& e) {
    throw DataError(path.string() + ": not a segrun Slurm job record: " + e.what());
  }
}

void write_job_record(const std::string& run_dir, const std::string& job_id, const std::string& script,
                      const std::string& log) {
  Json j;
  j["job_id"] = job_id;
  j["script"] = script;
  j["log"] = log;
  j["submitted"] = now_text();
  write_file_atomic((fs::path(run_dir) / kJobRecord).string(), j.dump(2) + "\n");
}

// Slurm's view of the jobs recorded in these run directories, keyed by run directory.
std::map<std::string, std::pair<JobRecord, std::optional<cluster::SlurmJobInfo>>> jobs_of(
    const std::vector<std::string>& run_dirs) {
  std::map<std::string, std::pair<JobRecord, std::optional<cluster::SlurmJobInfo>>> out;
  std::vector<std::string> ids;
  for (const auto& dir : run_dirs)
    if (auto record = read_job_record(dir)) {
      out[dir].first = *record;
      ids.push_back(record->job_id);
    }
  if (ids.empty()) return out;
  const auto states = cluster::query_jobs(ids);
  for (auto& [dir, entry] : out) {
    auto it = states.find(entry.first.job_id);
    if (it != states.end()) entry.second = it->second;
  }
  return out;
}

std::string next_submission_name(const std::string& slurm_dir) {
  for (int k = 1;; ++k) {
    const std::string name = "submit-" + std::to_string(k);
    std::error_code ec;
    if (!fs::exists(fs::path(slurm_dir) / (name + ".sbatch"), ec)) return name;
  }
}

bool same_slurm(const SlurmConfig& a, const SlurmConfig& b) {
  return a.partition == b.partition && a.account == b.account && a.qos == b.qos && a.time == b.time && a.mem == b.mem &&
         a.constraint == b.constraint && a.nodes == b.nodes && a.gpus_per_node == b.gpus_per_node &&
         a.tasks_per_node == b.tasks_per_node && a.cpus_per_task == b.cpus_per_task &&
         a.max_parallel == b.max_parallel && a.launcher == b.launcher && a.mpi == b.mpi &&
         a.signal_grace_s == b.signal_grace_s && a.max_requeues == b.max_requeues;
}

int submit_one_run(const SubmitRequest& req, std::ostream& out) {
  Config config = load_config(req.target, req.overrides);
  SlurmConfig slurm = config.cluster.slurm;
  req.flags.apply(slurm);
  const std::string run_dir = absolute(req.run_dir.empty() ? (fs::path("runs") / config.name).string() : req.run_dir);
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
  script.output = kRunLog;
  const std::string text = cluster::render_job_script(script);
  const std::string script_path = (fs::path(run_dir) / "job.sbatch").string();
  if (req.dry_run) {
    out << text;
    std::cerr << "dry run: would write " << script_path << " and run `sbatch --parsable` in " << run_dir << "\n";
    return 0;
  }
  const sweeps::RunRecord record = sweeps::read_run(run_dir);
  if (record.state == RunState::kDone) {
    out << run_dir << " is done already (delete it or choose another --run-dir to train again)\n";
    return 0;
  }
  const auto jobs = jobs_of({run_dir});
  if (!jobs.empty() && jobs.begin()->second.second && cluster::is_active(*jobs.begin()->second.second))
    throw ClusterError(run_dir + ": already queued as Slurm job " + jobs.begin()->second.first.job_id + " (" +
                       cluster::describe_job(*jobs.begin()->second.second) + "); `segrun cancel " + run_dir +
                       "` stops it");
  make_private_dir(run_dir);
  write_file_atomic(RunFolder(run_dir).config_path(), to_toml(config));
  if (record.state == RunState::kNew) write_run_status(run_dir, RunState::kQueued);
  write_with_mode(script_path, text, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  const std::string job_id = cluster::sbatch_submit(script_path, run_dir);
  const std::string log = (fs::path(run_dir) / kRunLog).string();
  write_job_record(run_dir, job_id, script_path, log);
  out << "submitted " << name << " as Slurm job " << job_id << " (" << cluster::resolve_layout(slurm, req.ranks).ntasks
      << " rank(s)); log " << log << "; status: segrun status " << run_dir << "\n";
  return 0;
}

int submit_sweep(const SubmitRequest& req, std::ostream& out) {
  const sweeps::SweepSpec spec = sweeps::load_sweep_spec(req.target);
  const std::string runs_dir = absolute(sweeps::sweep_runs_dir(spec, req.runs_dir));
  const auto plan = sweeps::plan_sweep(spec, runs_dir);
  if (plan.empty()) throw ConfigError(spec.path + ": the sweep has no runs");

  // Every run's resolved config; the Slurm settings must agree (one array, one set of resources).
  std::vector<Config> configs;
  for (const auto& e : plan) configs.push_back(load_config(spec.base, e.run.train_args()));
  for (size_t i = 1; i < plan.size(); ++i)
    if (!same_slurm(configs[i].cluster.slurm, configs[0].cluster.slurm))
      throw ConfigError(spec.path + ": cluster.slurm settings differ between runs " + plan[0].run.dir_name + " and " +
                        plan[i].run.dir_name + " (set cluster.slurm.* in [fixed], not in [grid] or [[variants]])");
  SlurmConfig slurm = configs[0].cluster.slurm;
  req.flags.apply(slurm);
  if (!cluster::is_safe_name(spec.name))
    throw ConfigError(spec.path + ": sweep name '" + spec.name + "' is not [A-Za-z0-9._-]");
  // resources.ranks defaults to 1; on GPU nodes (or with explicit tasks per node) the layout decides.
  const int ranks = req.ranks > 0                                                                ? req.ranks
                    : (spec.ranks == 1 && (slurm.gpus_per_node > 0 || slurm.tasks_per_node > 0)) ? 0
                                                                                                 : spec.ranks;
  const cluster::TaskLayout layout = cluster::resolve_layout(slurm, ranks);

  std::vector<std::string> dirs;
  for (const auto& e : plan) dirs.push_back(e.dir);
  const auto jobs = jobs_of(dirs);
  std::vector<size_t> todo;
  int done = 0, queued = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].action == sweeps::PlanAction::kReuse) {
      ++done;
      continue;
    }
    auto it = jobs.find(plan[i].dir);
    if (it != jobs.end() && it->second.second && cluster::is_active(*it->second.second)) {
      ++queued;
      (req.dry_run ? std::cerr : out) << plan[i].run.dir_name << ": already queued as Slurm job "
                                      << it->second.first.job_id << " (" << cluster::describe_job(*it->second.second)
                                      << ")\n";
      continue;
    }
    todo.push_back(i);
  }

  const std::string slurm_dir = (fs::path(runs_dir) / "slurm").string();
  const std::string submission = next_submission_name(slurm_dir);
  const std::string script_path = (fs::path(slurm_dir) / (submission + ".sbatch")).string();
  const std::string tasks_path = (fs::path(slurm_dir) / (submission + ".tasks")).string();
  std::vector<std::string> names;
  for (size_t i : todo) names.push_back(plan[i].run.dir_name);

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
                                  << queued << " already queued, " << todo.size() << " to submit; runs in " << runs_dir
                                  << "\n";
  if (req.dry_run) {
    out << text;
    std::cerr << "dry run: would write " << script_path << " and " << tasks_path << ":\n";
    for (size_t t = 0; t < names.size(); ++t) std::cerr << "  task " << t << ": " << names[t] << "\n";
    return 0;
  }
  if (todo.empty()) return 0;

  make_private_dir(runs_dir);
  make_private_dir(slurm_dir);
  const std::string program = cluster::self_executable();
  for (size_t i : todo) {
    const sweeps::PlanEntry& e = plan[i];
    make_private_dir(e.dir);
    std::vector<std::string> command{
        program, "train", RunFolder(e.dir).config_path(), "--run-dir", e.dir, "--resume", "auto"};
    sweeps::write_run_manifest(e.dir, spec, e.run, command);
    write_file_atomic(RunFolder(e.dir).config_path(), to_toml(configs[i]));
    if (e.record.state == RunState::kNew) write_run_status(e.dir, RunState::kQueued);
  }
  write_with_mode(tasks_path, tasks, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  write_with_mode(script_path, text, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  const std::string job_id = cluster::sbatch_submit(script_path, slurm_dir);
  for (size_t t = 0; t < todo.size(); ++t) {
    const std::string& dir = plan[todo[t]].dir;
    write_job_record(dir, job_id + "_" + std::to_string(t), script_path, (fs::path(dir) / kRunLog).string());
  }
  out << "submitted " << todo.size() << " run(s) as Slurm job array " << job_id << " (tasks 0-" << todo.size() - 1;
  if (slurm.max_parallel > 0) out << ", at most " << slurm.max_parallel << " at once";
  out << "); script " << script_path << "; status: segrun sweep status " << spec.path << "\n";
  return 0;
}

int run_status(const std::string& run_dir_arg, std::ostream& out) {
  std::error_code ec;
  if (!fs::is_directory(run_dir_arg, ec)) throw ConfigError(run_dir_arg + ": no such run directory");
  const std::string run_dir = absolute(run_dir_arg);
  const sweeps::RunRecord r = sweeps::read_run(run_dir);
  const auto jobs = jobs_of({run_dir});
  const cluster::SlurmJobInfo* job = nullptr;
  std::string job_id, log;
  if (!jobs.empty()) {
    job_id = jobs.begin()->second.first.job_id;
    log = jobs.begin()->second.first.log;
    if (jobs.begin()->second.second) job = &*jobs.begin()->second.second;
  }
  int64_t iters = -1;
  if (fs::exists(RunFolder(run_dir).config_path(), ec)) {
    try {
      iters = load_config(RunFolder(run_dir).config_path()).train.iters;
    } catch (const ConfigError&) {
    }
  }
  const int64_t iter = r.state == RunState::kDone && r.result.count("iterations")
                           ? static_cast<int64_t>(r.result.at("iterations"))
                           : std::max<int64_t>(0, r.last_iter);
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"run", run_dir});
  rows.push_back({"state", cluster::merge_run_state(r.state, r.reason, job)});
  rows.push_back({"progress", std::to_string(iter) + "/" + (iters >= 0 ? std::to_string(iters) : "?")});
  std::string metric = "-";
  if (r.has_result && r.result.count("mIoU"))
    metric = "mIoU " + sweeps::format_number(r.result.at("mIoU"), 2, "-");
  else if (r.last_val.count("mIoU"))
    metric = "mIoU " + sweeps::format_number(r.last_val.at("mIoU"), 2, "-") + " (last evaluation)";
  rows.push_back({"metric", metric});
  rows.push_back({"checkpoint", r.has_checkpoint ? "yes" : "no"});
  std::string job_text = job_id.empty() ? "- (not submitted to Slurm)" : job_id;
  if (job)
    job_text += " (slurm " + cluster::describe_job(*job) + (job->nodes.empty() ? "" : " on " + job->nodes) + ")";
  else if (!job_id.empty())
    job_text += " (no longer known to squeue/sacct)";
  rows.push_back({"job", job_text});
  rows.push_back({"log", log.empty() ? "-" : log});
  for (const auto& row : rows) out << row[0] << std::string(12 - row[0].size(), ' ') << row[1] << "\n";
  return 0;
}

int run_cancel(const std::string& target, const std::string& runs_dir_override, std::ostream& out) {
  std::vector<std::string> dirs;
  std::error_code ec;
  if (fs::is_directory(target, ec)) {
    if (fs::exists(fs::path(target) / kJobRecord, ec) || fs::exists(RunFolder(target).status_path(), ec)) {
      dirs.push_back(absolute(target));
    } else {
      for (const auto& r : sweeps::scan_runs(target)) dirs.push_back(absolute(r.dir));
    }
  } else {
    const sweeps::SweepSpec spec = sweeps::load_sweep_spec(target);
    for (const auto& e : sweeps::plan_sweep(spec, absolute(sweeps::sweep_runs_dir(spec, runs_dir_override))))
      dirs.push_back(e.dir);
  }
  std::vector<std::string> ids;
  for (const auto& [dir, entry] : jobs_of(dirs))
    if (entry.second && cluster::is_active(*entry.second)) ids.push_back(entry.first.job_id);
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

}  // namespace

struct ClusterCommands::State {
  CLI::App* submit = nullptr;
  CLI::App* status = nullptr;
  CLI::App* cancel = nullptr;
  SubmitRequest request;
  std::string on = "slurm";
  std::string status_run;
  std::string cancel_target;
  std::string cancel_runs_dir;
  // Raw flag values (applied only when given).
  std::string partition, account, qos, time, mem, constraint, launcher, mpi;
  int nodes = 1, gpus_per_node = 0, cpus_per_task = 0, tasks_per_node = 0, max_parallel = 0, grace = 0;
  std::map<std::string, CLI::Option*> flag_options;
};

ClusterCommands::ClusterCommands(CLI::App& app) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.submit = app.add_subcommand(
      "submit",
      "submit a run (CONFIG [k=v...]) or a sweep (SPEC, as a job array) to Slurm; preempted runs requeue and resume");
  s.submit->add_option("target", s.request.target, "experiment config TOML, or sweep spec TOML")->required();
  s.submit->add_option("overrides", s.request.overrides, "key=value overrides (with a CONFIG)");
  s.submit->add_option("--on", s.on, "scheduler")->capture_default_str()->check(CLI::IsMember({"slurm"}));
  auto flag = [&](const char* name, auto& target, const char* help) {
    s.flag_options[name] = s.submit->add_option(name, target, help);
    return s.flag_options[name];
  };
  flag("--partition", s.partition, "Slurm partition (cluster.slurm.partition)");
  flag("--account", s.account, "account to charge (cluster.slurm.account)");
  flag("--qos", s.qos, "quality of service (cluster.slurm.qos)");
  flag("--time", s.time, "time limit, e.g. 1-00:00:00 (cluster.slurm.time)");
  flag("--mem", s.mem, "memory per node, e.g. 64G (cluster.slurm.mem)");
  flag("--constraint", s.constraint, "node features (cluster.slurm.constraint)");
  flag("--launcher", s.launcher, "srun | mpirun (cluster.slurm.launcher)")->check(CLI::IsMember({"srun", "mpirun"}));
  flag("--mpi", s.mpi, "srun --mpi plugin (cluster.slurm.mpi)");
  flag("--nodes", s.nodes, "nodes per run (cluster.slurm.nodes)")->check(CLI::Range(1, 65536));
  flag("--gpus-per-node", s.gpus_per_node, "GPUs per node, one rank each (cluster.slurm.gpus_per_node)")
      ->check(CLI::Range(0, 64));
  flag("--cpus-per-task", s.cpus_per_task, "CPUs per rank (cluster.slurm.cpus_per_task)")->check(CLI::Range(0, 4096));
  flag("--tasks-per-node", s.tasks_per_node, "ranks per node on CPU nodes (cluster.slurm.tasks_per_node)")
      ->check(CLI::Range(0, 4096));
  flag("--max-parallel", s.max_parallel, "array tasks at once (cluster.slurm.max_parallel)")
      ->check(CLI::Range(0, 100000));
  flag("--signal-grace", s.grace, "seconds between USR1 and the time limit (cluster.slurm.signal_grace_s)")
      ->check(CLI::Range(1, 65535));
  s.submit
      ->add_option("-n,--ranks", s.request.ranks,
                   "MPI ranks per run (default: the sweep's resources.ranks, or nodes x GPUs per node)")
      ->check(CLI::Range(1, 65536));
  s.submit->add_option("--export", s.request.exports, "NAME=VALUE exported to the ranks (repeatable)")
      ->allow_extra_args(false);
  s.submit->add_option("--run-dir", s.request.run_dir, "with a CONFIG: the run directory (default runs/<name>)");
  s.submit->add_option("--runs-dir,--sweep-dir", s.request.runs_dir,
                       "with a SPEC: its runs folder (default: the spec's runs_dir, else runs/<name>)");
  s.submit->add_flag("--dry-run", s.request.dry_run, "print the job script, write and submit nothing");

  s.status = app.add_subcommand("status", "state of one run: its run directory merged with its Slurm job, job id, log");
  s.status->add_option("run", s.status_run, "run directory")->required();

  s.cancel =
      app.add_subcommand("cancel", "cancel the pending and running Slurm jobs of a sweep (SPEC) or of a run directory");
  s.cancel->add_option("target", s.cancel_target, "sweep spec, run directory or runs folder")->required();
  s.cancel->add_option("--runs-dir", s.cancel_runs_dir, "with a SPEC: its runs folder");
}

ClusterCommands::~ClusterCommands() = default;

bool ClusterCommands::selected() const { return *state_->submit || *state_->status || *state_->cancel; }

int ClusterCommands::run() {
  State& s = *state_;
  if (*s.status) return run_status(s.status_run, std::cout);
  if (*s.cancel) return run_cancel(s.cancel_target, s.cancel_runs_dir, std::cout);
  SlurmFlags& f = s.request.flags;
  auto given = [&](const char* name) { return s.flag_options.at(name)->count() > 0; };
  if (given("--partition")) f.partition = s.partition;
  if (given("--account")) f.account = s.account;
  if (given("--qos")) f.qos = s.qos;
  if (given("--time")) f.time = s.time;
  if (given("--mem")) f.mem = s.mem;
  if (given("--constraint")) f.constraint = s.constraint;
  if (given("--launcher")) f.launcher = s.launcher;
  if (given("--mpi")) f.mpi = s.mpi;
  if (given("--nodes")) f.nodes = s.nodes;
  if (given("--gpus-per-node")) f.gpus_per_node = s.gpus_per_node;
  if (given("--cpus-per-task")) f.cpus_per_task = s.cpus_per_task;
  if (given("--tasks-per-node")) f.tasks_per_node = s.tasks_per_node;
  if (given("--max-parallel")) f.max_parallel = s.max_parallel;
  if (given("--signal-grace")) f.signal_grace_s = s.grace;
  if (is_sweep_spec(s.request.target)) {
    if (!s.request.overrides.empty())
      throw ConfigError("submit " + s.request.target +
                        ": a sweep spec takes no key=value overrides (put them in [fixed])");
    if (!s.request.run_dir.empty()) throw ConfigError("submit: --run-dir is for one run; a sweep takes --runs-dir");
    return submit_sweep(s.request, std::cout);
  }
  if (!s.request.runs_dir.empty()) throw ConfigError("submit: --runs-dir is for a sweep spec; one run takes --run-dir");
  return submit_one_run(s.request, std::cout);
}

int submit_sweep_on_slurm(const std::string& spec_path, const std::string& runs_dir, int max_parallel, bool dry_run,
                          std::ostream& out) {
  SubmitRequest req;
  req.target = spec_path;
  req.runs_dir = runs_dir;
  req.dry_run = dry_run;
  if (max_parallel > 0) req.flags.max_parallel = max_parallel;
  return submit_sweep(req, out);
}

std::map<std::string, sweeps::SchedulerState> slurm_states_of(const std::vector<sweeps::PlanEntry>& plan) {
  std::vector<std::string> dirs;
  for (const auto& e : plan) dirs.push_back(e.dir);
  std::map<std::string, sweeps::SchedulerState> out;
  for (const auto& [dir, entry] : jobs_of(dirs)) {
    const sweeps::RunRecord* record = nullptr;
    for (const auto& e : plan)
      if (e.dir == dir) record = &e.record;
    sweeps::SchedulerState state;
    state.state = cluster::merge_run_state(record ? record->state : RunState::kNew, record ? record->reason : "",
                                           entry.second ? &*entry.second : nullptr);
    state.job = entry.first.job_id;
    state.log = entry.first.log;
    out[dir] = state;
  }
  return out;
}

bool launch_in_allocation(const LaunchCommand& cmd, int* exit_code) {
  const cluster::SlurmEnv env = cluster::read_slurm_env();
  if (!env.in_allocation || env.in_step || !cmd.hosts.empty()) return false;
  if (env.ntasks > 0 && cmd.ranks > env.ntasks) {
    log::warn(
        "Slurm job {} has {} task(s) (SLURM_NTASKS), fewer than -n {}: starting the ranks on this node "
        "with mpirun instead of srun (ask for --ntasks={} to spread them over the allocation)",
        env.job_id, env.ntasks, cmd.ranks, cmd.ranks);
    return false;
  }
  cluster::AllocationLaunchOptions options;
  options.ranks = cmd.ranks;
  options.command.push_back(cluster::self_executable());
  options.command.insert(options.command.end(), cmd.command.begin(), cmd.command.end());
  if (const char* l = std::getenv("SEGRUN_SLURM_LAUNCHER")) options.launcher = l;
  if (const char* m = std::getenv("SEGRUN_SLURM_MPI")) options.mpi = m;
  const auto argv = cluster::build_allocation_command(env, options);
  if (cmd.dry_run) {
    std::cout << process::shell_join(argv) << "\n";
    *exit_code = 0;
    return true;
  }
  log::info("inside Slurm job {} ({} task(s) on {}): $ {}", env.job_id, env.ntasks, env.nodes.size(),
            process::shell_join(argv));
  *exit_code = cluster::run_and_wait(argv, launched_stop_signal(cmd.command));
  return true;
}

}  // namespace segrun::launcher
