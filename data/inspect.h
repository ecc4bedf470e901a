#pragma once
// Store inspection for `segrun data inspect`: what a store holds (records, classes, shards,
// dataset, split, images per class) and, with verify, whether every record's bytes match their
// CRC-32. Opening errors (missing/truncated/foreign files) throw DataError; CRC failures are
// collected, not thrown. Thread-safe (no shared state).

#include <cstdint>
#include <string>
#include <vector>

namespace segrun::data {

struct CrcFailure {
  int64_t index = 0;  // global record index
  std::string shard;  // shard file path
  int64_t local = 0;  // record index inside the shard
  std::string name;
};

struct StoreSummary {
  std::string path;
  std::string dataset;
  std::string split;
  std::string label_mapping;
  int64_t records = 0;
  int classes = 0;
  int shards = 0;
  int ignore_index = 255;
  std::vector<std::string> class_names;
  std::vector<int64_t> images_per_class;  // presence histogram
  bool verified = false;
  int64_t records_verified = 0;
  std::vector<CrcFailure> crc_failures;
};

StoreSummary inspect_store(const std::string& path, bool verify);
// One JSON object (stable key order).
std::string to_json(const StoreSummary& summary);
// A short human-readable report: header lines, then the classes present, most frequent first.
std::string to_text(const StoreSummary& summary);

}  // namespace segrun::data
