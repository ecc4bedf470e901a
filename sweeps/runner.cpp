#include "sweeps/runner.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <system_error>

#include "cluster/local_launch.h"
#include "cluster/local_scheduler.h"
#include "core/atomic_file.h"
#include "core/config.h"
#include "core/error.h"
#include "core/output_paths.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/process.h"
#include "core/run_folder.h"
#include "core/spelling.h"
#include "core/stop_request.h"
#include "sweeps/slurm_jobs.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;

std::string truncate(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

// The line of a job's log that best explains a failure: segrun's own first error line (a line
// starting with "segrun: error", as main writes it: "segrun: error on rank 0: ...: store not
// found"), else the last line with a letter or digit (mpirun frames its messages with dashes).
// Open MPI's own lines after an abort ("[vm:00407] Set MCA parameter ... help / error messages",
// "with errorcode 2.") mention errors too, but say nothing about the cause.
std::string failure_line_of(const std::string& path) {
  if (!path_exists(path)) return "";
  std::string text;
  try {
    text = read_file(path);
  } catch (const IoError&) {
    return "";
  }
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (std::any_of(line.begin(), line.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); }))
      lines.push_back(line);
    start = end + 1;
  }
  for (const std::string& line : lines) {
    const size_t first = line.find_first_not_of(" \t");
    if (line.compare(first, 13, "segrun: error") == 0) return line.substr(first);
  }
  return lines.empty() ? "" : lines.back();
}

std::string metric_text(const RunRecord& r, const std::string& metric) {
  if (r.finished()) {
    auto it = r.result.find(metric);
    if (it != r.result.end()) return format_number(it->second, 2, "-");
    auto pc = r.per_class.find(metric);
    if (pc != r.per_class.end()) return format_number(pc->second, 2, "-");
  }
  auto it = r.last_val.find(metric);
  return it != r.last_val.end() ? format_number(it->second, 2, "-") + " (iter " + std::to_string(r.last_iter) + ")"
                                : "-";
}

// The overrides that differ between the runs of a plan (all of them for a single run), so that
// [fixed] keys do not crowd the listing.
std::vector<Overrides> varying_overrides(const std::vector<PlanEntry>& plan) {
  std::map<std::string, std::set<std::string>> values;
  for (const auto& e : plan)
    for (const auto& [k, v] : e.run.overrides) values[k].insert(v);
  std::vector<Overrides> out;
  for (const auto& e : plan) {
    Overrides o;
    for (const auto& [k, v] : e.run.overrides) {
      const std::string& key = k;  // a lambda may not capture a structured binding in C++17 (clang)
      if (plan.size() == 1 || values[key].size() > 1 ||
          std::any_of(plan.begin(), plan.end(), [&](const PlanEntry& x) { return !x.run.overrides.count(key); }))
        o[key] = v;
    }
    out.push_back(std::move(o));
  }
  return out;
}

std::string sweep_lock_path(const std::string& runs_dir) { return (fs::path(runs_dir) / ".sweep.lock").string(); }

}  // namespace

RunsLock::RunsLock(const std::string& runs_dir, const std::string& busy)
    : lock_(FolderLock::try_take(sweep_lock_path(runs_dir))) {
  if (lock_) return;
  // Who holds it, from the line the holder wrote ("" when it has let go since the try).
  const std::optional<std::string> holder = lock_holder(sweep_lock_path(runs_dir));
  throw ConfigError(runs_dir + ": in use by " + (holder && !holder->empty() ? *holder : "another process") + "; " +
                    busy);
}

SweepRunSummary run_sweep(const SweepSpec& spec, const SweepRunOptions& options, std::ostream& out) {
  const std::string runs_dir = sweep_runs_dir(spec, options.runs_dir);
  // Locked before planning: a `sweep run --on slurm` holds the lock while it submits, so the plan
  // sees every job it recorded.
  std::optional<RunsLock> lock;
  if (!options.dry_run) {
    std::error_code ec;
    fs::create_directories(runs_dir, ec);
    if (ec) throw IoError(runs_dir + ": cannot create runs folder: " + ec.message());
    lock.emplace(runs_dir,
                 "one `segrun sweep run` uses a runs folder at a time (segrun sweep status " + spec.path + ")");
  }
  std::vector<PlanEntry> plan = plan_sweep(spec, runs_dir);
  mark_slurm_jobs(plan, options.slurm_jobs ? options.slurm_jobs(plan) : active_slurm_jobs(plan));
  // Refused before any run starts (each would start, fail on it and be marked failed), as `submit`;
  // a dry run still shows its commands (a plan made where the stores are not), and says it.
  const std::vector<std::string> missing = missing_inputs_of_plan(spec, plan);
  if (!missing.empty() && !options.dry_run) throw ConfigError(missing.front());
  if (!missing.empty()) log::warn("{}; the sweep runs once it exists", describe_missing_inputs(missing));
  SweepRunSummary summary;
  std::vector<const PlanEntry*> todo;
  std::vector<Overrides> shown;  // per todo entry: the overrides that differ between runs
  const std::vector<Overrides> varying = varying_overrides(plan);
  for (size_t p = 0; p < plan.size(); ++p) {
    const PlanEntry& e = plan[p];
    if (e.action == PlanAction::kReuse) {
      ++summary.reused;
      if (e.config_changed)
        out << "warning: " << e.folder_name() << " is done but its base config changed since"
            << (e.config_change.empty() ? "" : " (" + e.config_change + ")") << "; delete the run folder to redo it\n";
    } else if (e.action == PlanAction::kOnSlurm) {
      ++summary.on_slurm;
      out << "skipping " << e.folder_name() << ": Slurm job " << e.slurm_job << " has it\n";
    } else {
      if (!e.refusal.empty()) {
        ++summary.not_run;
        out << "not run: " << e.refusal << "\n";
        continue;
      }
      todo.push_back(&e);
      shown.push_back(varying[p]);
    }
  }
  const int cores = options.cores > 0 ? options.cores : process::usable_cores();
  const int per_core_fit = std::max(1, cores / spec.ranks);
  // The threads of a rank follow from the cores and the runs the machine takes at once, not from
  // how many runs are left: a run's figures depend on its thread count (float sums split
  // differently), so a run trains the same whether it is the sweep's last or one of many.
  const int slots = std::max(1, std::min(options.max_parallel > 0 ? options.max_parallel : per_core_fit, per_core_fit));
  const int parallel = std::min(slots, static_cast<int>(std::max<size_t>(1, todo.size())));
  const int threads = std::max(1, cores / (slots * spec.ranks));
  const std::string program = options.program.empty() ? cluster::self_executable() : options.program;

  std::vector<cluster::LocalJob> jobs;
  std::vector<std::vector<std::string>> commands;
  for (const PlanEntry* e : todo) {
    const std::string dir = fs::absolute(e->dir).lexically_normal().string();
    std::vector<std::string> command{program, "train", spec.base};
    for (const auto& a : e->run.train_args()) command.push_back(a);
    command.insert(command.end(), {"--run-dir", dir});
    if (e->action == PlanAction::kResume) command.insert(command.end(), {"--resume", "auto"});
    cluster::LaunchOptions launch;
    launch.ranks = spec.ranks;
    launch.command = command;
    launch.mpirun = options.mpirun;
    launch.threads_per_rank = threads;
    cluster::LocalJob job;
    job.name = e->folder_name();
    job.argv = cluster::build_mpirun_command(launch);
    job.slots = spec.ranks;
    job.log_path = (fs::path(dir) / "sweep.log").string();
    job.stop_signal = process::local_stop_signal(load_config(spec.base, e->run.train_args()).cluster.slurm.signal);
    jobs.push_back(std::move(job));
    commands.push_back(std::move(command));
  }

  out << "sweep " << spec.name << ": " << plan.size() << " runs, " << summary.reused << " done, "
      << (summary.on_slurm > 0 ? std::to_string(summary.on_slurm) + " on Slurm, " : "")
      << (summary.not_run > 0 ? std::to_string(summary.not_run) + " not run, " : "") << todo.size() << " to run ("
      << parallel << " at a time x " << spec.ranks << " rank(s) x " << threads << " thread(s)); runs in " << runs_dir
      << "\n";
  if (options.dry_run) {
    for (const auto& job : jobs) out << process::shell_join(job.argv) << "\n";
    return summary;
  }
  if (todo.empty()) return summary;

  // Every run's folder is checked before any is written (write_run_manifest checks again).
  for (const PlanEntry* entry : todo) require_new_empty_or_run_folder("sweep " + spec.name + ":", entry->dir);
  for (size_t i = 0; i < todo.size(); ++i) {
    write_run_manifest(*todo[i], spec, commands[i]);
    if (todo[i]->record.state == RunState::kNew) write_run_status(todo[i]->dir, RunState::kQueued);
  }

  const size_t total = todo.size();
  cluster::LocalSchedulerOptions scheduler;
  scheduler.cores = cores;
  scheduler.max_parallel = parallel;
  scheduler.on_start = [&](size_t i, const cluster::LocalJob& job) {
    const PlanEntry& e = *todo[i];
    out << "[" << i + 1 << "/" << total << "] start " << job.name << " (" << describe(shown[i]) << ", seed "
        << e.run.seed << ")" << (e.action == PlanAction::kResume ? " resuming" : "") << std::endl;
    // Its folder removed while the sweep waited (to redo the run): begun afresh, as the next sweep
    // run would. When that fails too, the start fails (no log to append to) and is reported so.
    std::error_code ec;
    if (fs::exists(e.dir, ec) || ec) return;
    try {
      write_run_manifest(e.dir, spec, e.run, commands[i]);  // today's fingerprint, not the removed run's
      write_run_status(e.dir, RunState::kQueued);
      out << "  (its folder was removed since the sweep started: begun afresh)" << std::endl;
    } catch (const std::exception& x) {
      out << "  (its folder was removed since the sweep started and cannot be made again: " << first_line(x.what())
          << ")" << std::endl;
    }
  };
  // A run's status after its end; a folder removed meanwhile (the user's choice) is said, not fatal.
  const auto mark_status = [](const std::string& dir, RunState state, const std::string& reason) -> std::string {
    std::error_code ec;
    if (!fs::exists(dir, ec) && !ec) return " (its folder was removed: no status written)";
    try {
      write_run_status(dir, state, reason);
      return "";
    } catch (const std::exception& x) {
      return " (its status was not written: " + first_line(x.what()) + ")";
    }
  };
  // Whether the run ended (done or failed; false: preempted, to be resumed).
  const auto report_finish = [&](size_t i, const cluster::LocalJob& job,
                                 const cluster::LocalJobResult& result) -> bool {
    const PlanEntry& e = *todo[i];
    RunRecord now = read_run(e.dir);
    char secs[32];
    std::snprintf(secs, sizeof(secs), "%.1f s", result.seconds);
    out << "[" << i + 1 << "/" << total << "] ";
    if (result.exit_code == 0 && now.state == RunState::kDone) {
      ++summary.finished;
      auto it = now.result.find(spec.table.metric);
      out << "done " << job.name << " in " << secs;
      if (it != now.result.end()) out << ": " << spec.table.metric << " " << format_number(it->second, 2, "-");
      out << std::endl;
      return true;
    }
    if (result.exit_code == kExitPreempted || (result.stop_sent && now.state != RunState::kFailed)) {
      ++summary.preempted;
      const std::string unwritten =
          now.state == RunState::kPreempted
              ? ""
              : mark_status(e.dir, RunState::kPreempted,
                            "stopped by the sweep runner (exit code " + std::to_string(result.exit_code) + ")");
      out << "preempted " << job.name << " after " << secs << " (resumable: run the sweep again)" << unwritten
          << std::endl;
      return false;
    }
    ++summary.failed;
    // Refused because another process trains the run (it took the run's lock): its status is its own.
    if (now.state == RunState::kRunning && now.holder && !now.holder->empty()) {
      out << "failed " << job.name << " after " << secs << ": another process trains the run (" << *now.holder
          << "); its status is left as it is (log: " << job.log_path << ")" << std::endl;
      return true;
    }
    std::string reason = now.state == RunState::kFailed ? now.reason : "";
    std::string unwritten;
    if (reason.empty()) {
      reason = "exit code " + std::to_string(result.exit_code);
      const std::string last = failure_line_of(job.log_path);
      if (!last.empty()) reason += ": " + last;
      unwritten = mark_status(e.dir, RunState::kFailed, reason);
    }
    out << "failed " << job.name << " after " << secs << ": " << truncate(reason, 300) << " (log: " << job.log_path
        << ")" << unwritten << std::endl;
    return true;
  };
  // After each run that ended (done or failed): runs ended so far, their rate and the time left at
  // that rate. A preempted run is not counted: it is left to the next `sweep run`.
  Progress progress("sweep " + spec.name + ":", static_cast<int64_t>(total), "runs", ProgressStyle::kLines, 0.0,
                    nullptr, [&out](const std::string& text, bool final_line) {
                      if (!final_line) out << text << std::endl;
                    });
  scheduler.on_finish = [&](size_t i, const cluster::LocalJob& job, const cluster::LocalJobResult& result) {
    if (report_finish(i, job, result)) progress.advance();
  };
  const auto results = cluster::run_local_jobs(jobs, scheduler);
  for (const auto& r : results) summary.not_started += r.started ? 0 : 1;
  out << "sweep " << spec.name << ": " << summary.finished + summary.reused << "/" << plan.size() << " done ("
      << summary.reused << " reused), " << summary.failed << " failed, " << summary.preempted << " preempted, "
      << summary.not_started << " not started"
      << (summary.not_run > 0 ? ", " + std::to_string(summary.not_run) + " not run (see above)" : "")
      << (summary.on_slurm > 0 ? ", " + std::to_string(summary.on_slurm) + " left to Slurm" : "") << "\n";
  if (summary.preempted + summary.not_started > 0)
    out << "stopped: every run is resumable; run `segrun sweep run " << spec.path << "` again\n";
  return summary;
}

std::string format_plan(const std::vector<PlanEntry>& plan, TableFormat fmt) {
  std::vector<std::vector<std::string>> rows;
  std::map<PlanAction, int> counts;
  int not_run = 0;  // of the runs to resume, those resume_refusal leaves (ranks, training keys changed)
  const std::vector<Overrides> shown = varying_overrides(plan);
  for (size_t i = 0; i < plan.size(); ++i) {
    const PlanEntry& e = plan[i];
    ++counts[e.action];
    if (e.action == PlanAction::kResume && !e.refusal.empty()) ++not_run;
    std::string action;
    const std::string no_result = e.record.result_error.empty() ? "no result.json" : "result.json unreadable";
    switch (e.action) {
      case PlanAction::kNew: action = "new"; break;
      case PlanAction::kReuse: action = e.config_changed ? "done (reuse; base config changed)" : "done (reuse)"; break;
      case PlanAction::kResume:
        // From the newest checkpoint: metrics.jsonl goes on past it until a crash. A run marked
        // done without its result.json resumes at its last iteration: it is evaluated again.
        action = (e.refusal.empty() ? "resume (iter " : "not run (iter ") + std::to_string(e.record.checkpoint_iter) +
                 (!e.ranks_change.empty() ? "; checkpoints of " + e.ranks_change
                  : !e.refusal.empty()    ? "; the base config changed what it computes"
                                          : "") +
                 (e.record.state == RunState::kDone ? "; done, but " + no_result : "") +
                 (e.config_changed && (e.refusal.empty() || !e.ranks_change.empty()) ? "; base config changed)" : ")");
        break;
      case PlanAction::kRetry:
        action = e.record.state == RunState::kDone
                     ? std::string("retry (done, but ") + (e.record.result_error.empty()
                                                               ? "no result.json nor checkpoint)"
                                                               : "result.json unreadable, no checkpoint)")
                     : "retry (failed: " + truncate(e.record.reason, 60) + ")";
        break;
      case PlanAction::kOnSlurm: action = "on slurm (job " + e.slurm_job + ")"; break;
    }
    rows.push_back({e.run.id, e.folder_name(), describe(shown[i]), std::to_string(e.run.seed), action});
  }
  std::string out = format_table({"id", "run", "overrides", "seed", "state"}, rows, fmt,
                                 {Align::kLeft, Align::kLeft, Align::kLeft, Align::kRight, Align::kLeft});
  if (fmt == TableFormat::kText || fmt == TableFormat::kMarkdown)
    out += std::to_string(plan.size()) + " runs: " + std::to_string(counts[PlanAction::kNew]) + " new, " +
           std::to_string(counts[PlanAction::kReuse]) + " done (reused), " +
           std::to_string(counts[PlanAction::kResume] - not_run) + " to resume, " +
           (not_run > 0 ? std::to_string(not_run) + " not run, " : "") + std::to_string(counts[PlanAction::kRetry]) +
           " to retry" +
           (counts[PlanAction::kOnSlurm] > 0 ? ", " + std::to_string(counts[PlanAction::kOnSlurm]) + " on Slurm" : "") +
           "\n";
  return out;
}

std::string format_status(const std::vector<PlanEntry>& plan, const std::string& metric, TableFormat fmt,
                          const std::map<std::string, SchedulerState>& scheduler, const std::string& metric_origin) {
  // A metric no run records, where some record others, is a misspelling, not a column of "-".
  std::set<std::string> recorded;
  for (const auto& e : plan) {
    for (const auto& [name, v] : e.record.result) recorded.insert(name);
    for (const auto& [name, v] : e.record.per_class) recorded.insert(name);
    for (const auto& [name, v] : e.record.last_val) recorded.insert(name);
  }
  if (!recorded.empty() && !recorded.count(metric)) {
    const std::string meant = likely_meant(metric, {recorded.begin(), recorded.end()});
    throw ConfigError(metric_origin + " " + metric + ": no run of the sweep records it" +
                      (meant.empty() ? std::string() : " (did you mean '" + meant + "'?)"));
  }
  std::vector<std::vector<std::string>> rows;
  std::map<std::string, int> counts;
  const std::vector<Overrides> shown = varying_overrides(plan);
  for (size_t i = 0; i < plan.size(); ++i) {
    const PlanEntry& e = plan[i];
    const RunRecord& r = e.record;
    std::string state = describe_run_state(r);
    const auto job = scheduler.find(e.dir);
    if (job != scheduler.end() && !job->second.state.empty()) {
      state = job->second.state;
      ++counts[state.substr(0, state.find_first_of(" :("))];
      state = truncate(state, 80);
    } else {
      ++counts[state.substr(0, state.find_first_of(" :("))];
      if (!r.reason.empty() && state == "failed") state += ": " + truncate(r.reason, 60);
      state = truncate(state, 80);
    }
    rows.push_back({e.run.id, describe(shown[i]), std::to_string(e.run.seed), state,
                    std::to_string(run_progress(r)) + "/" + std::to_string(e.run.iters), metric_text(r, metric)});
    if (!scheduler.empty()) {
      rows.back().push_back(job != scheduler.end() && !job->second.job.empty() ? job->second.job : "-");
      rows.back().push_back(job != scheduler.end() && !job->second.log.empty() ? job->second.log : "-");
    }
  }
  std::vector<std::string> header{"id", "overrides", "seed", "state", "progress", metric};
  std::vector<Align> align{Align::kLeft, Align::kLeft, Align::kRight, Align::kLeft, Align::kRight, Align::kRight};
  if (!scheduler.empty()) {
    header.insert(header.end(), {"job", "log"});
    align.insert(align.end(), {Align::kLeft, Align::kLeft});
  }
  std::string out = format_table(header, rows, fmt, align);
  if (fmt == TableFormat::kText || fmt == TableFormat::kMarkdown) {
    std::string line;
    for (const auto& [state, n] : counts) line += (line.empty() ? "" : ", ") + std::to_string(n) + " " + state;
    out += std::to_string(plan.size()) + " runs: " + line + "\n";
  }
  return out;
}

}  // namespace segrun::sweeps
