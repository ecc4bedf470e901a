#include "cluster/slurm_client.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "cluster/slurm_env.h"
#include "core/error.h"
#include "core/format.h"
#include "core/process.h"

namespace segrun::cluster {
namespace {

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, sep)) out.push_back(field);
  if (!line.empty() && line.back() == sep) out.emplace_back();
  return out;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!trim(line).empty()) out.push_back(line);
  return out;
}

std::string first_word(const std::string& s) {
  const std::string t = trim(s);
  return t.substr(0, t.find(' '));
}

std::string no_none(const std::string& s) {
  const std::string t = trim(s);
  return t == "None" || t == "(null)" || t == "None assigned" ? "" : t;
}

std::string last_line_of(const std::string& s) { return s.substr(s.find_last_of('\n') + 1); }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Job ids we pass to Slurm's commands: "123", "123_4" (digits, one optional underscore).
void check_job_id(const std::string& id) {
  const auto us = id.find('_');
  const std::string head = id.substr(0, us);
  const std::string tail = us == std::string::npos ? "1" : id.substr(us + 1);
  auto digits = [](const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  };
  if (!digits(head) || !digits(tail)) throw ClusterError("'" + id + "' is not a Slurm job id");
}

}  // namespace

const char* const kSqueueFields = "JobArrayID:|,State:|,Reason:|,RestartCnt:|,NodeList:|";
const char* const kSacctFields = "JobID,State,ExitCode,Reason,NodeList";

namespace {

// A Slurm command's output; ClusterError naming the command when it is not installed.
process::Captured run_slurm_command(const std::vector<std::string>& argv, const std::string& cwd = "") {
  try {
    return process::run_captured(argv, cwd);
  } catch (const ProcessError& e) {
    throw ClusterError(std::string(e.what()) + ": is this a Slurm login node? (install slurm-wlm)");
  }
}

// What a query command printed; a missing command or a failure yields no output, and `failure`
// (when given) says which, with the last line of its errors (Slurm's commands end on the cause):
// "squeue failed (exit code 1): slurm_load_jobs error: Unable to contact slurm controller ...".
std::string query_output(const std::vector<std::string>& argv, std::string* failure = nullptr) {
  try {
    process::Captured r = process::run_captured(argv);
    if (r.status.ok()) return r.out;
    if (failure)
      *failure = argv[0] + " failed (" + r.status.describe() + ")" +
                 (trim(r.err).empty() ? std::string() : ": " + last_line_of(trim(r.err)));
  } catch (const ProcessError& e) {
    if (failure) *failure = std::string(e.what()) + " (is this a Slurm login node?)";
  }
  return "";
}

}  // namespace

std::string sbatch_submit(const std::string& script_path, const std::string& cwd) {
  const process::Captured r = run_slurm_command({"sbatch", "--parsable", script_path}, cwd);
  if (!r.status.ok())
    throw ClusterError("sbatch " + script_path + " failed (" + r.status.describe() +
                       "): " + trim(r.err.empty() ? r.out : r.err));
  const std::string id = trim(r.out).substr(0, trim(r.out).find(';'));
  check_job_id(id);
  return id;
}

std::vector<SlurmJobInfo> parse_squeue(const std::string& text) {
  std::vector<SlurmJobInfo> out;
  for (const auto& line : lines_of(text)) {
    const auto f = split(line, '|');
    if (f.size() < 5) throw ClusterError("squeue: unexpected line '" + line + "' (expected " + kSqueueFields + ")");
    SlurmJobInfo j;
    j.job_id = trim(f[0]);
    j.state = first_word(f[1]);
    j.reason = no_none(f[2]);
    const std::string restarts = trim(f[3]);
    j.restarts =
        !restarts.empty() && restarts.find_first_not_of("0123456789") == std::string::npos ? std::stoi(restarts) : -1;
    j.nodes = no_none(f[4]);
    j.source = "squeue";
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<SlurmJobInfo> parse_sacct(const std::string& text) {
  std::vector<SlurmJobInfo> out;
  for (const auto& line : lines_of(text)) {
    const auto f = split(line, '|');
    if (f.size() < 5) throw ClusterError("sacct: unexpected line '" + line + "' (expected " + kSacctFields + ")");
    const std::string id = trim(f[0]);
    if (id.find('.') != std::string::npos) continue;  // a step (123.batch, 123_4.0)
    SlurmJobInfo j;
    j.state = first_word(f[1]);  // "CANCELLED by 0" -> CANCELLED
    j.exit_code = trim(f[2]);
    j.reason = no_none(f[3]);
    j.nodes = no_none(f[4]);
    j.source = "sacct";
    // The pending remainder of an array: "123_[5-9%2]" or "123_[5,7-8]".
    const auto open = id.find("_[");
    if (open != std::string::npos && id.back() == ']') {
      std::string range = id.substr(open + 2, id.size() - open - 3);
      range = range.substr(0, range.find('%'));
      for (const auto& task : expand_host_list("[" + range + "]")) {
        SlurmJobInfo t = j;
        t.job_id = id.substr(0, open) + "_" + std::to_string(std::stol(task));
        out.push_back(std::move(t));
      }
      continue;
    }
    j.job_id = id;
    out.push_back(std::move(j));
  }
  return out;
}

JobQuery query_jobs(const std::vector<std::string>& job_ids) {
  JobQuery out;
  if (job_ids.empty()) return out;
  std::set<std::string> wanted(job_ids.begin(), job_ids.end());
  std::set<std::string> parents;  // ask for whole arrays: squeue/sacct take the array job id
  for (const auto& id : wanted) {
    check_job_id(id);
    parents.insert(id.substr(0, id.find('_')));
  }
  const std::string list = join(std::vector<std::string>(parents.begin(), parents.end()), ",");
  // squeue fails as a whole when one id is unknown (purged): ask for all of this user's jobs.
  // squeue lists every live job, so a job it does not list has ended -- when it answered.
  const passwd* user = ::getpwuid(::getuid());
  const std::string user_flag = user ? std::string("--user=") + user->pw_name : "--me";
  for (auto& j : parse_squeue(query_output(
           {"squeue", "--noheader", "--array", "--states=all", user_flag, "-O", kSqueueFields}, &out.unanswered)))
    if (wanted.count(j.job_id)) out.jobs[j.job_id] = j;
  // sacct adds exit codes of ended jobs; a cluster without accounting storage fails here, harmlessly.
  if (out.jobs.size() < wanted.size()) {
    for (auto& j : parse_sacct(query_output(
             {"sacct", "--noheader", "--parsable2", "-X", "--jobs=" + list, std::string("--format=") + kSacctFields})))
      if (wanted.count(j.job_id) && !out.jobs.count(j.job_id)) out.jobs[j.job_id] = j;
  }
  return out;
}

bool is_active(const SlurmJobInfo& job) {
  static const std::set<std::string> kActive{"PENDING",   "RUNNING",       "REQUEUED",    "REQUEUE_HOLD", "REQUEUE_FED",
                                             "SUSPENDED", "COMPLETING",    "CONFIGURING", "RESIZING",     "SIGNALING",
                                             "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED",     "SPECIAL_EXIT"};
  return kActive.count(job.state) > 0;
}

std::string describe_job(const SlurmJobInfo& job) {
  const std::string state = lower(job.state);
  if (job.state == "PENDING") {
    // squeue knows the restart count; sacct does not, but a requeued job waits for its BeginTime.
    if (job.restarts > 0 || (job.restarts < 0 && job.reason == "BeginTime"))
      return "requeued (pending" + (job.reason.empty() ? std::string() : ": " + job.reason) + ")";
    return "pending" + (job.reason.empty() ? std::string() : " (" + job.reason + ")");
  }
  if (job.state.rfind("REQUEUE", 0) == 0) return "requeued";
  if (job.state == "RUNNING" || job.state == "COMPLETING" || job.state == "CONFIGURING") {
    std::string s = state;
    if (job.restarts > 0) s += " (restart " + std::to_string(job.restarts) + ")";
    return s;
  }
  std::vector<std::string> details;
  if (!job.exit_code.empty() && job.exit_code != "0:0") details.push_back("exit " + job.exit_code);
  if (!job.reason.empty() && job.state != "COMPLETED") details.push_back(job.reason);
  return state + (details.empty() ? "" : " (" + join(details, ", ") + ")");
}

std::string merge_run_state(RunState run_state, const std::string& run_reason, const SlurmJobInfo* job) {
  if (job && is_active(*job)) return describe_job(*job);
  const std::string slurm = job ? " [slurm: " + describe_job(*job) + "]" : "";
  if (run_state == RunState::kDone) return "done";
  if (run_state == RunState::kFailed)
    return "failed" + (run_reason.empty() ? std::string() : ": " + run_reason) + slurm;
  if (run_state == RunState::kPreempted) {
    if (job && job->state == "CANCELLED") return "cancelled (checkpointed: resumable)";
    return "preempted (checkpointed: resumable)" + slurm;
  }
  // `segrun cancel` (scancel) of a job still waiting in the queue: nothing ran, nothing was lost.
  if (job && job->state == "CANCELLED" && (run_state == RunState::kNew || run_state == RunState::kQueued))
    return "cancelled before it started [slurm: " + describe_job(*job) + "]";
  if (job)
    return "lost: slurm job " + describe_job(*job) + " while the run was " +
           (run_state == RunState::kNew ? "not started" : to_string(run_state));
  return to_string(run_state);
}

void scancel(const std::vector<std::string>& job_ids) {
  if (job_ids.empty()) return;
  for (const auto& id : job_ids) check_job_id(id);
  std::vector<std::string> argv{"scancel"};
  argv.insert(argv.end(), job_ids.begin(), job_ids.end());
  const process::Captured r = run_slurm_command(argv);
  if (!r.status.ok())
    throw ClusterError("scancel " + join(job_ids, " ") + " failed (" + r.status.describe() + "): " + trim(r.err));
}

}  // namespace segrun::cluster
