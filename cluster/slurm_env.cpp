#include "cluster/slurm_env.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "cluster/local_launch.h"
#include "core/error.h"

extern char** environ;

namespace segrun::cluster {
namespace {

constexpr size_t kMaxHosts = 1000000;

long parse_int(const std::string& text, const std::string& what, long min, long max) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    throw ClusterError(what + ": '" + text + "' is not a non-negative integer");
  errno = 0;
  const long v = std::strtol(text.c_str(), nullptr, 10);
  if (errno != 0 || v < min || v > max)
    throw ClusterError(what + ": " + text + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) +
                       "]");
  return v;
}

// Splits at commas that are not inside brackets.
std::vector<std::string> split_top_level(const std::string& text, const std::string& what) {
  std::vector<std::string> parts;
  std::string current;
  int depth = 0;
  for (char c : text) {
    if (c == '[') ++depth;
    if (c == ']' && --depth < 0) throw ClusterError(what + " '" + text + "': unbalanced ']'");
    if (c == ',' && depth == 0) {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (depth != 0) throw ClusterError(what + " '" + text + "': unbalanced '['");
  parts.push_back(current);
  return parts;
}

// The values of one bracket group "01-03,07" with their zero padding.
std::vector<std::string> expand_range_group(const std::string& group, const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= group.size()) {
    size_t end = group.find(',', start);
    if (end == std::string::npos) end = group.size();
    const std::string item = group.substr(start, end - start);
    const std::string what = "host list '" + list + "'";
    const auto dash = item.find('-');
    if (dash == std::string::npos) {
      parse_int(item, what, 0, 999999999);
      out.push_back(item);
    } else {
      const std::string lo_text = item.substr(0, dash);
      const std::string hi_text = item.substr(dash + 1);
      const long lo = parse_int(lo_text, what, 0, 999999999);
      const long hi = parse_int(hi_text, what, 0, 999999999);
      if (hi < lo) throw ClusterError(what + ": descending range " + item);
      if (static_cast<size_t>(hi - lo) >= kMaxHosts) throw ClusterError(what + ": range " + item + " too large");
      const size_t width = lo_text.size();
      for (long v = lo; v <= hi; ++v) {
        std::string digits = std::to_string(v);
        if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
        out.push_back(digits);
      }
    }
    if (end == group.size()) break;
    start = end + 1;
  }
  return out;
}

std::string get(const Environment& env, const std::string& key) {
  auto it = env.find(key);
  return it == env.end() ? std::string() : it->second;
}

int get_int(const Environment& env, const std::string& key, int fallback) {
  const std::string v = get(env, key);
  return v.empty() ? fallback : static_cast<int>(parse_int(v, key, 0, 100000000));
}

}  // namespace

std::vector<std::string> expand_host_list(const std::string& list) {
  std::vector<std::string> hosts;
  if (list.empty()) return hosts;
  for (const std::string& part : split_top_level(list, "host list")) {
    if (part.empty()) throw ClusterError("host list '" + list + "': empty entry");
    // Cartesian product over the bracket groups of this entry: "r[1-2]n[1-2]" -> r1n1 r1n2 r2n1 r2n2.
    std::vector<std::string> names{""};
    size_t pos = 0;
    while (pos < part.size()) {
      const size_t open = part.find('[', pos);
      const std::string literal = part.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
      if (literal.find(']') != std::string::npos) throw ClusterError("host list '" + list + "': unbalanced ']'");
      for (auto& n : names) n += literal;
      if (open == std::string::npos) break;
      const size_t close = part.find(']', open);
      if (close == std::string::npos) throw ClusterError("host list '" + list + "': unbalanced '['");
      const auto values = expand_range_group(part.substr(open + 1, close - open - 1), list);
      std::vector<std::string> next;
      for (const auto& n : names)
        for (const auto& v : values) next.push_back(n + v);
      if (next.size() > kMaxHosts) throw ClusterError("host list '" + list + "': more than 1000000 hosts");
      names = std::move(next);
      pos = close + 1;
    }
    hosts.insert(hosts.end(), names.begin(), names.end());
    if (hosts.size() > kMaxHosts) throw ClusterError("host list '" + list + "': more than 1000000 hosts");
  }
  return hosts;
}

std::vector<int> expand_count_list(const std::string& list) {
  std::vector<int> out;
  if (list.empty()) return out;
  for (const std::string& part : split_top_level(list, "count list")) {
    const std::string what = "count list '" + list + "'";
    const auto paren = part.find('(');
    if (paren == std::string::npos) {
      out.push_back(static_cast<int>(parse_int(part, what, 0, 1000000)));
      continue;
    }
    if (part.size() < paren + 4 || part.compare(paren, 2, "(x") != 0 || part.back() != ')')
      throw ClusterError(what + ": '" + part + "' is not N or N(xK)");
    const int value = static_cast<int>(parse_int(part.substr(0, paren), what, 0, 1000000));
    const long repeat = parse_int(part.substr(paren + 2, part.size() - paren - 3), what, 1, kMaxHosts);
    out.insert(out.end(), static_cast<size_t>(repeat), value);
    if (out.size() > kMaxHosts) throw ClusterError(what + ": more than 1000000 entries");
  }
  return out;
}

std::string SlurmEnv::job_ref() const {
  if (!array_job_id.empty() && !array_task_id.empty()) return array_job_id + "_" + array_task_id;
  return job_id;
}

SlurmEnv parse_slurm_env(const Environment& env) {
  SlurmEnv s;
  s.job_id = get(env, "SLURM_JOB_ID");
  if (s.job_id.empty()) s.job_id = get(env, "SLURM_JOBID");
  s.in_allocation = !s.job_id.empty();
  s.in_step = !get(env, "SLURM_STEP_ID").empty() || !get(env, "SLURM_STEPID").empty();
  s.array_job_id = get(env, "SLURM_ARRAY_JOB_ID");
  s.array_task_id = get(env, "SLURM_ARRAY_TASK_ID");
  s.restart_count = get_int(env, "SLURM_RESTART_COUNT", 0);
  s.ntasks = get_int(env, "SLURM_NTASKS", get_int(env, "SLURM_NPROCS", 0));
  s.procid = get_int(env, "SLURM_PROCID", -1);
  s.localid = get_int(env, "SLURM_LOCALID", -1);
  s.nodeid = get_int(env, "SLURM_NODEID", -1);
  s.cpus_per_task = get_int(env, "SLURM_CPUS_PER_TASK", 0);
  std::string nodes = get(env, "SLURM_JOB_NODELIST");
  if (nodes.empty()) nodes = get(env, "SLURM_NODELIST");
  s.nodes = expand_host_list(nodes);
  s.tasks_per_node = expand_count_list(get(env, "SLURM_TASKS_PER_NODE"));
  if (!s.tasks_per_node.empty() && !s.nodes.empty() && s.tasks_per_node.size() != s.nodes.size())
    throw ClusterError("SLURM_TASKS_PER_NODE '" + get(env, "SLURM_TASKS_PER_NODE") + "' names " +
                       std::to_string(s.tasks_per_node.size()) + " nodes, SLURM_JOB_NODELIST '" + nodes + "' " +
                       std::to_string(s.nodes.size()));
  return s;
}

SlurmEnv read_slurm_env() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry = *e;
    if (entry.rfind("SLURM_", 0) != 0) continue;
    const auto eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return parse_slurm_env(env);
}

std::string allocation_hosts(const SlurmEnv& env) {
  if (env.nodes.empty()) throw ClusterError("SLURM_JOB_NODELIST is not set: not inside a Slurm allocation?");
  if (env.tasks_per_node.size() != env.nodes.size())
    throw ClusterError("SLURM_TASKS_PER_NODE does not give one task count per node of SLURM_JOB_NODELIST");
  std::string out;
  for (size_t i = 0; i < env.nodes.size(); ++i) {
    if (env.tasks_per_node[i] == 0) continue;
    out += (out.empty() ? "" : ",") + env.nodes[i] + ":" + std::to_string(env.tasks_per_node[i]);
  }
  return out;
}

std::vector<std::string> build_allocation_command(const SlurmEnv& env, const AllocationLaunchOptions& options) {
  if (options.ranks < 1) throw ConfigError("-n must be at least 1 (got " + std::to_string(options.ranks) + ")");
  if (options.command.empty()) throw ConfigError("launch: no command given after --");
  if (env.ntasks > 0 && options.ranks > env.ntasks)
    throw ConfigError("-n " + std::to_string(options.ranks) + " is more than the " + std::to_string(env.ntasks) +
                      " task(s) of Slurm job " + env.job_id + " (SLURM_NTASKS)");
  std::vector<std::string> argv;
  if (options.launcher == "srun") {
    // --input=none, as mpirun's --stdin none: srun runs in its own process group (run_and_wait),
    // and reading the terminal from there (srun forwards stdin by default) would stop it.
    argv = {"srun",
            "--mpi=" + options.mpi,
            "--ntasks=" + std::to_string(options.ranks),
            "--kill-on-bad-exit=1",
            "--input=none",
            "--export=ALL,SEGRUN_LAUNCHED=1,SEGRUN_WORLD_SIZE=" + std::to_string(options.ranks)};
    argv.insert(argv.end(), options.command.begin(), options.command.end());
    return argv;
  }
  if (options.launcher != "mpirun")
    throw ConfigError("launcher '" + options.launcher + "' (SEGRUN_SLURM_LAUNCHER): expected srun or mpirun");
  LaunchOptions launch;
  launch.ranks = options.ranks;
  launch.hosts = allocation_hosts(env);
  launch.command = options.command;
  if (env.cpus_per_task > 0) launch.threads_per_rank = env.cpus_per_task;
  return build_mpirun_command(launch);
}

}  // namespace segrun::cluster
