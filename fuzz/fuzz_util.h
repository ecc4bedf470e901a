#pragma once
// Shared helpers of segrun's libFuzzer targets (fuzz/*_fuzzer.cpp). A target feeds its input to
// one parser or decoder; an expected refusal is a segrun::Error (caught and ignored), anything
// else -- another exception, a crash, a sanitizer report, a broken round trip -- is a finding.
// fuzz_check aborts with a message (libFuzzer then saves the input as crash-<sha1>).
// Single-threaded, like libFuzzer's default mode.

#include <cstdio>
#include <cstdlib>
#include <string>

namespace segrun::fuzz {

inline void fuzz_check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_check failed: %s\n", what.c_str());
    std::abort();
  }
}

}  // namespace segrun::fuzz
