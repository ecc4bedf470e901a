#pragma once
// The store manifest: the small JSON file `<store>/manifest.json` that makes a store valid. It is
// written last (atomically) by the packer, after every shard file exists under its final name,
// and names the shards, the record count, the class list, the label mapping and the K x K class
// co-occurrence matrix of the split. See docs/store-format.md. Pure data + (de)serialization;
// thread-safe.

#include <cstdint>
#include <string>
#include <vector>

namespace segrun::data {

constexpr const char* kStoreFormatName = "segrun-store";
constexpr int kStoreFormatVersion = 1;
constexpr const char* kManifestFileName = "manifest.json";

struct ShardEntry {
  std::string file;  // file name relative to the store directory
  int64_t records = 0;
};

struct Manifest {
  std::string format = kStoreFormatName;
  int version = kStoreFormatVersion;
  std::string dataset;  // "ade20k" | "cityscapes"
  std::string split;    // as given to pack ("training", "val", ...)
  int num_classes = 0;
  int ignore_index = 255;
  std::vector<std::string> class_names;
  std::string label_mapping;  // data::mapping_name(layout)
  int64_t records = 0;
  std::vector<ShardEntry> shards;
  // Row-major K x K: [i*K + j] = number of images in which classes i and j both appear;
  // the diagonal is the number of images containing class i.
  std::vector<int64_t> cooccurrence;
};

std::string manifest_to_json(const Manifest& manifest);
// `origin` names the file in DataError messages (wrong format, version, missing fields).
Manifest parse_manifest(const std::string& json_text, const std::string& origin);

// "shard-00003-of-00008.h5"
std::string shard_file_name(int shard, int num_shards);
// Accepts the store directory or the manifest path itself; returns the store directory.
std::string store_directory(const std::string& store_path);
std::string manifest_path(const std::string& store_path);

}  // namespace segrun::data
