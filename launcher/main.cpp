// The segrun executable: CLI (CLI11) -> subcommands. The one catch of the program lives here:
// an error is printed as one line naming what is wrong, and in a multi-rank world the whole
// world is aborted so that no rank waits forever for a dead peer.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <initializer_list>
#include <iostream>

#include "build_config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/run_folder.h"
#include "launcher/cluster_commands.h"
#include "launcher/data_commands.h"
#include "launcher/launch_commands.h"
#include "launcher/model_commands.h"
#include "launcher/mpi_holder.h"
#include "launcher/run_commands.h"
#include "launcher/sweep_commands.h"

namespace {

using namespace segrun;
using namespace segrun::launcher;

// Rank of this process as the MPI launcher announced it (known before MPI_Init).
int announced_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return 0;
}

int exit_code_for(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) return kExitConfigError;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  log::LogOptions early;
  early.rank = announced_rank();
  log::init_logging(early);

  CLI::App app{"segrun: train CLIP-based scene parsers on MPI ranks, from raw datasets to mIoU tables"};
  app.set_version_flag("--version", std::string("segrun ") + SEGRUN_VERSION);
  app.require_subcommand(1);

  // Every subcommand belongs to one group (launcher/command_group.h), registered the same way.
  DataCommands data_commands(app);        // data synth | pack | inspect
  RunCommands run_commands(app);          // train, eval, metrics, config
  LaunchCommands launch_commands(app);    // launch, demo
  SweepCommands sweep_commands(app);      // sweep plan | run | status, table
  ClusterCommands cluster_commands(app);  // submit, status, cancel (Slurm)
  ModelCommands model_commands(app);      // model info
  const std::initializer_list<CommandGroup*> groups{&data_commands,  &run_commands,     &launch_commands,
                                                    &sweep_commands, &cluster_commands, &model_commands};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  MpiHolder mpi(&argc, &argv);
  try {
    int code = 0;
    for (CommandGroup* group : groups) {
      if (group->selected()) {
        code = group->run(mpi);
        break;
      }
    }
    log::flush();
    mpi.finalize();
    return code;
  } catch (const std::exception& e) {
    const int code = exit_code_for(e);
    const bool multi_rank = mpi.active() && mpi.world_size() > 1;
    const int rank = mpi.active() ? mpi.context().world_rank : announced_rank();
    // Config errors are the same on every rank: rank 0 reports them.
    if (rank == 0 || !dynamic_cast<const ConfigError*>(&e)) {
      std::string prefix = "segrun: error: ";
      if (rank != 0 || multi_rank) prefix = "segrun: error on rank " + std::to_string(rank) + ": ";
      // One line: library errors (e.g. LibTorch's) may append a backtrace after the message.
      std::string message = e.what();
      message = message.substr(0, message.find('\n'));
      std::cerr << prefix << message << std::endl;
    }
    log::flush();
    if (multi_rank) dist::MpiSession::abort_world(code);
    mpi.finalize();
    return code;
  }
}
