#pragma once
// What `segrun launch` and `segrun demo` (launcher/launch_commands.cpp, demo.cpp) share: the
// mpirun command of N ranks of this executable; and the signal `launch` forwards to them as
// "checkpoint and stop" (demo always uses SIGUSR1).

#include <string>
#include <vector>

namespace segrun::launcher {

// The mpirun command that runs `segrun <args>` (this very executable) on `ranks` ranks, with the
// environment variables `exports` (NAME=VALUE or NAME) passed to every rank.
std::vector<std::string> segrun_on_ranks(int ranks, const std::string& hosts, const std::vector<std::string>& args,
                                         const std::vector<std::string>& exports = {});

// The signal a launcher forwards as "checkpoint and stop" to the ranks of `command`: for `train
// CONFIG [k=v...]`, the one its cluster.slurm.signal asks for (process::local_stop_signal), else
// SIGUSR1. A config that does not load throws its ConfigError: `launch` reports it once, before
// any rank starts.
int launched_stop_signal(const std::vector<std::string>& command);

}  // namespace segrun::launcher
