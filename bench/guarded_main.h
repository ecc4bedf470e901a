#pragma once
// A benchmark program's main(): `return segrun::bench::guarded_main("bench_x", argc, argv, run);`.
// An exception that escapes `run` becomes one line "<program>: <what>" on stderr and exit status 1,
// never std::terminate's abort and core dump. A multi-rank program may pass `on_error` to abort the
// whole MPI world, so that no rank is left waiting in a collective for the one that failed
// (bench_allreduce does).

#include <cstdio>
#include <exception>

namespace segrun::bench {

inline int guarded_main(const char* program, int argc, char** argv, int (*run)(int, char**),
                        void (*on_error)() = nullptr) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    if (on_error) on_error();
    return 1;
  }
}

}  // namespace segrun::bench
