#pragma once
// Packing: real ADE20K / Cityscapes folders -> a sharded store (docs/store-format.md).
// Every rank of `comm` calls pack_store with the same options. Records (sorted source list) are
// split contiguously across `shards`; rank r writes shards r, r+W, r+2W, ... Each shard is written
// to a temp name and renamed when complete; the per-class presence is combined into the split's
// co-occurrence matrix with one allreduce, and rank 0 writes the manifest last (atomically) after
// every shard exists. All of it goes into a hidden staging folder beside the target
// (`.<name>.packing`), which rank 0 renames into `out` only once every shard and the manifest are
// complete: a failed pack removes it and leaves no `out` (its error ends "(<out> was not
// created)"); a killed one leaves only the staging folder, which the next pack to `out` removes
// when it holds nothing but shard and manifest files (and their temp files): a staging folder
// with anything else in it is refused, nothing removed.
// Errors: ConfigError for the command line's mistakes (an existing non-empty `out`, an unknown
// split, a --root that is not a folder, a staging folder holding other files); DataError, naming
// the file, for the dataset's (missing image or annotation folders, an image without annotation,
// an undecodable image, a label that is not 8-bit single-channel or not the image's size, a raw
// label value outside the layout's range). A failure on one rank makes every rank throw (no rank
// is left waiting in a collective); the failing rank's error keeps its type.

#include <cstdint>
#include <string>
#include <vector>

#include "data/classes.h"

namespace segrun::dist {
class Communicator;
}

namespace segrun::data {

struct PackOptions {
  Layout layout = Layout::kAde20k;
  std::string root;   // dataset folder (ADE20K: the folder holding ADEChallengeData2016, or that folder)
  std::string split;  // ADE20K: training|validation (train|val accepted); Cityscapes: train|val
  std::string out;    // store directory to create
  int shards = 1;
};

struct PackSummary {
  int64_t records = 0;
  int shards = 0;
  std::string manifest;                   // path of the manifest written
  std::vector<int64_t> images_per_class;  // diagonal of the co-occurrence matrix
};

// One source record found by scanning: image, its annotation, and the stem used as its name.
struct SourceRecord {
  std::string image;
  std::string annotation;
  std::string name;
};

// Sorted list of the split's records; ConfigError for an unknown split or a missing root folder,
// DataError for a missing folder below it, an image without annotation, or an empty split.
// The bytes of a source file (an image, an annotation); DataError naming it when it cannot be read.
std::vector<uint8_t> read_bytes(const std::string& path);

std::vector<SourceRecord> scan_split(Layout layout, const std::string& root, const std::string& split);

// ConfigError unless `out` is new or an empty folder (pack_store's first check).
void check_pack_target(const std::string& out);
// The checks of `options` that need no rank and write nothing, as pack_store makes them
// (ConfigError): check_pack_target, the split, the --root folder, and a staging folder left
// behind that holds files pack does not write. `segrun launch` makes them before the ranks start.
void check_pack_request(const PackOptions& options);
PackSummary pack_store(const PackOptions& options, dist::Communicator& comm);

}  // namespace segrun::data
