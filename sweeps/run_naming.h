#pragma once
// Run ids and run folder names of a sweep. A run's id is the first 10 hex digits of a 64-bit
// FNV-1a hash (with MurmurHash3's fmix64 finalizer) of its sorted "key=value" override lines
// (canonical values, sweeps/values.h) plus its seed, so the order in which a spec lists keys,
// variants or filters never changes an id; a run folder is "<id>-<slug>", the slug readable and
// at most 64 characters. Ids of existing runs must never change: a changed id orphans every
// finished run folder of every sweep. Pure functions; thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "sweeps/values.h"

namespace segrun::sweeps {

// `cluster.*` keys (Slurm partition, time, ...) say where a run executes, not what it computes:
// they are left out of run ids and fingerprints, so changing them reuses finished runs.
bool is_scheduling_key(const std::string& key);
std::string run_id(const Overrides& overrides, uint64_t seed);
// The 64-bit hash run ids and slugs are made of (FNV-1a with fmix64, docs/sweeps.md), as 16 hex
// digits: for other files segrun stamps (a plot script's).
std::string hash_hex(const std::string& text);
// The readable part of each configuration's run folder name (same order as configurations; a
// folder is "<id>-<slug>_s<seed>", unique through its id): "<key><value>" parts joined by '_' for
// the swept keys a configuration sets, a key by its last component (more where two swept keys
// share it: data.crop, eval.crop), a value as in a file name (RN50.pt, 640x640). The keys that
// tell the configurations apart come first (keys with more values first, each unless the ones
// before it determine it: the weights file follows from the backbone), then the others. Where
// that is longer than 64 characters with the seed, only the distinguishing keys (every key for a
// lone configuration), cut to fit, and "~" + 6 hex digits of a hash of the configuration's
// overrides, so that it stays unique.
std::vector<std::string> configuration_slugs(const std::vector<Overrides>& configurations,
                                             const std::vector<std::string>& swept_keys);
// configuration_slug + "_s<seed>".
std::string run_slug(const std::string& configuration_slug, uint64_t seed);

}  // namespace segrun::sweeps
