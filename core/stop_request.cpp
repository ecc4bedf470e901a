#include "core/stop_request.h"

#include <atomic>
#include <csignal>

#include "core/error.h"
#include "core/process.h"

namespace segrun::process {
namespace {

std::atomic<int> g_stop_signal{0};  // set only by the handler; read at iteration ends

extern "C" void segrun_request_stop(int signal) { g_stop_signal.store(signal); }

}  // namespace

int preemption_signal(const std::string& name) {
  if (name == "USR1") return SIGUSR1;
  if (name == "USR2") return SIGUSR2;
  if (name == "TERM") return SIGTERM;
  throw ConfigError("cluster.slurm.signal: \"" + name + "\" is not a preemption signal; use USR1, USR2 or TERM");
}

int local_stop_signal(const std::string& name) { return name == "USR2" ? SIGUSR2 : SIGUSR1; }

void install_stop_handlers(int preemption_signal) {
  struct sigaction action {};
  action.sa_handler = segrun_request_stop;
  sigemptyset(&action.sa_mask);
  const int local = preemption_signal == SIGUSR2 ? SIGUSR2 : SIGUSR1;  // local_stop_signal's rule
  for (int sig : {SIGTERM, SIGINT, preemption_signal, local}) sigaction(sig, &action, nullptr);
  // A closed terminal stops the run as Ctrl-C does, unless it was started under nohup.
  if (!ignores_hangup()) sigaction(SIGHUP, &action, nullptr);
}

bool stop_requested() { return g_stop_signal.load() != 0; }

void clear_stop_request() { g_stop_signal.store(0); }

}  // namespace segrun::process
