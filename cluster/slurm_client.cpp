#include "cluster/slurm_client.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>

#include "cluster/slurm_env.h"
#include "core/error.h"

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

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
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

CommandResult run_command(const std::vector<std::string>& argv, const std::string& cwd) {
  if (argv.empty()) throw ClusterError("run_command: nothing to run");
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw ClusterError("pipe failed: " + std::string(std::strerror(errno)));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw ClusterError("pipe failed: " + std::string(std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw ClusterError("fork failed: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
      std::fprintf(stderr, "cannot enter %s: %s\n", cwd.c_str(), std::strerror(errno));
      ::_exit(126);
    }
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  CommandResult result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return result;
}

std::string sbatch_submit(const std::string& script_path, const std::string& cwd) {
  const CommandResult r = run_command({"sbatch", "--parsable", script_path}, cwd);
  if (r.exit_code == 127) throw ClusterError("sbatch not found: is this a Slurm login node? (install slurm-wlm)");
  if (r.exit_code != 0)
    throw ClusterError("sbatch " + script_path + " failed (exit code " + std::to_string(r.exit_code) +
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

std::map<std::string, SlurmJobInfo> query_jobs(const std::vector<std::string>& job_ids) {
  std::map<std::string, SlurmJobInfo> out;
  if (job_ids.empty()) return out;
  std::set<std::string> wanted(job_ids.begin(), job_ids.end());
  std::set<std::string> parents;  // ask for whole arrays: squeue/sacct take the array job id
  for (const auto& id : wanted) {
    check_job_id(id);
    parents.insert(id.substr(0, id.find('_')));
  }
  const std::string list = join(std::vector<std::string>(parents.begin(), parents.end()), ",");
  // squeue fails as a whole when one id is unknown (purged): ask for all of this user's jobs.
  const passwd* user = ::getpwuid(::getuid());
  const std::string user_flag = user ? std::string("--user=") + user->pw_name : "--me";
  const CommandResult q =
      run_command({"squeue", "--noheader", "--array", "--states=all", user_flag, "-O", kSqueueFields});
  if (q.exit_code == 0)
    for (auto& j : parse_squeue(q.out))
      if (wanted.count(j.job_id)) out[j.job_id] = j;
  if (out.size() < wanted.size()) {
    const CommandResult a = run_command(
        {"sacct", "--noheader", "--parsable2", "-X", "--jobs=" + list, std::string("--format=") + kSacctFields});
    if (a.exit_code == 0)
      for (auto& j : parse_sacct(a.out))
        if (wanted.count(j.job_id) && !out.count(j.job_id)) out[j.job_id] = j;
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
  if (run_state == RunState::kFailed) return "failed" + (run_reason.empty() ? std::string() : ": " + run_reason) + slurm;
  if (run_state == RunState::kPreempted) {
    if (job && job->state == "CANCELLED") return "cancelled (checkpointed: resumable)";
    return "preempted (checkpointed: resumable)" + slurm;
  }
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
  const CommandResult r = run_command(argv);
  if (r.exit_code == 127) throw ClusterError("scancel not found: is this a Slurm login node?");
  if (r.exit_code != 0)
    throw ClusterError("scancel " + join(job_ids, " ") + " failed (exit code " + std::to_string(r.exit_code) +
                       "): " + trim(r.err));
}

}  // namespace segrun::cluster
