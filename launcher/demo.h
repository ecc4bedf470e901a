#pragma once
// `segrun demo`: synthesizes ADE20K-layout data, packs it into sharded stores on N ranks, trains
// the embedded tiny config (configs/demo_tiny.toml) on N ranks, prints the mIoU and writes the
// run's report to <dir>/report.html (sweeps/report.h), replacing the previous one. Resumable: a
// second call reuses the data and stores and trains a fresh run.

#include <cstdint>
#include <string>

namespace segrun::launcher {

struct DemoOptions {
  std::string dir = "segrun-demo";
  int ranks = 2;
  int64_t iters = 0;  // 0 = the embedded default
};

int run_demo(const DemoOptions& options);

}  // namespace segrun::launcher
