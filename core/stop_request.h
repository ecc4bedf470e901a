#pragma once
// How a training process is asked to stop cleanly (finish the iteration, checkpoint, exit 75).
//   - The preemption signal a run's cluster.slurm.signal names: USR1, USR2 or TERM (what a
//     scheduler sends before it takes the node; preemption_signal()).
//   - What a local launcher sends its ranks for it (local_stop_signal()): mpirun forwards only
//     SIGUSR1 and SIGUSR2, so SIGUSR2 for USR2 and SIGUSR1 otherwise -- a TERM run also listens
//     to SIGUSR1.
//   - The handlers a training process installs (install_stop_handlers()): SIGINT, SIGTERM, SIGHUP
//     (unless ignored, as under nohup), the preemption signal and its local stand-in each set a
//     flag that stop_requested() reads at the end of every iteration.
// The flag is process-wide state because a signal handler can reach nothing else.

#include <string>

namespace segrun::process {

// The signal number of a cluster.slurm.signal name (USR1, USR2, TERM); ConfigError naming the key
// otherwise.
int preemption_signal(const std::string& name);
// The signal a local launcher sends the ranks of a run whose cluster.slurm.signal is `name`.
int local_stop_signal(const std::string& name);

// Installs the stop handlers above for `preemption_signal` (a signal number); idempotent.
void install_stop_handlers(int preemption_signal);
bool stop_requested();
// Forgets a stop request (tests; a process that trains several runs in turn).
void clear_stop_request();

}  // namespace segrun::process
