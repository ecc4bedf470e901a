// The segrun executable: CLI (CLI11) -> subcommands. The one catch of the program lives here:
// an error is printed as one line naming what is wrong (a rejected command line too, exit 2), and
// in a multi-rank world the whole world is aborted so that no rank waits forever for a dead peer.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "core/run_folder.h"
#include "launcher/command_group.h"
#include "launcher/mpi_holder.h"

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

  CLI::App app;
  CommandRegistry commands(app);
  add_segrun_commands(commands);  // every subcommand (launcher/command_group.h)
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
    // The same on every rank: rank 0 reports it.
    if (announced_rank() == 0)
      std::cerr << "segrun: error: " << usage_error_message(app, std::vector<std::string>(argv + 1, argv + argc), e)
                << std::endl;
    return kExitConfigError;
  }

  MpiHolder mpi(&argc, &argv);
  try {
    int code = 0;
    commands.run_chosen(mpi, &code);
    log::flush();
    mpi.finalize();
    return code;
  } catch (const std::exception& e) {
    const int code = exit_code_for(e);
    log::write_to_file(log::Level::kError, e.what());  // a rank's log tells its end (the terminal may be gone)
    const bool multi_rank = mpi.active() && mpi.world_size() > 1;
    const int rank = mpi.active() ? mpi.context().world_rank : announced_rank();
    // Once MPI runs, every rank says why it stops, config errors too: a rank's own (a file missing
    // on its host, a folder another rank is making) would otherwise go unsaid while rank 0 fails
    // for the world or waits for it; an error every rank meets is then said once per rank.
    // Before MPI runs (the command line, the config file), rank 0 alone reports a config error:
    // the ranks read the same words.
    const bool config_error = dynamic_cast<const ConfigError*>(&e) != nullptr;
    if (rank == 0 || !config_error || multi_rank) {
      std::string prefix = "segrun: error: ";
      if (rank != 0 || multi_rank) prefix = "segrun: error on rank " + std::to_string(rank) + ": ";
      // One line, in one write: ranks share the launcher's stderr, and a line written in pieces
      // can interleave with another rank's.
      const std::string line = prefix + first_line(e.what()) + "\n";
      std::fwrite(line.data(), 1, line.size(), stderr);
      std::fflush(stderr);
    }
    log::flush();
    if (multi_rank) dist::MpiSession::abort_world(code);
    mpi.finalize();
    return code;
  }
}
