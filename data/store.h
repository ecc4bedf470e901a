#pragma once
// The HDF5 store: one shard file per StoreWriter, one StoreReader over a whole store (manifest +
// every shard). Format: docs/store-format.md. A shard holds records (original encoded image
// file bytes, PNG-encoded train-id label map, shape, source stem, class presence, CRC-32).
//
// StoreWriter builds the shard in memory (HDF5 core driver) and commit() writes it through
// "<path>.tmp-<pid>" + fsync + rename; destroyed without commit() it writes nothing, so no partial
// shard ever exists under its final name, and a full disk is one clean IoError naming the shard.
// StoreReader loads the manifest and every shard's per-record metadata at open and reads record
// bytes on demand. Its reads are thread-safe: the serial libhdf5 is not, so every HDF5 call in
// this library is serialized by one process-wide lock (the library itself is process-wide state).
// Bad stores (missing/truncated/foreign files, wrong version, CRC mismatch) throw DataError
// naming the file and, for records, the record.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/manifest.h"

namespace segrun::data {

// Thrown by StoreReader::read when a record's bytes do not match its stored CRC-32.
class CorruptRecordError : public DataError {
 public:
  using DataError::DataError;
};

struct ShardHeader {
  std::string dataset;
  std::string split;
  std::vector<std::string> class_names;
  std::string label_mapping;
  int ignore_index = 255;
  int shard_index = 0;
  int num_shards = 1;
};

struct RecordInput {
  std::vector<uint8_t> image_bytes;  // the original encoded image file
  std::vector<uint8_t> label_bytes;  // PNG of the train-id map (uint8, 255 = ignore)
  uint32_t height = 0;
  uint32_t width = 0;
  std::string name;               // source file stem
  std::vector<uint8_t> presence;  // K entries, 1 = class appears
};

struct RawRecord {
  int64_t index = 0;  // global index in the store
  std::vector<uint8_t> image_bytes;
  std::vector<uint8_t> label_bytes;
  uint32_t height = 0;
  uint32_t width = 0;
  std::string name;
  uint32_t stored_crc = 0;
};

// zlib CRC-32 of the image bytes followed by the label bytes.
uint32_t record_crc(const std::vector<uint8_t>& image_bytes, const std::vector<uint8_t>& label_bytes);

class StoreWriter {
 public:
  StoreWriter(const std::string& path, const ShardHeader& header);
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  void append(const RecordInput& record);
  // Writes the per-record tables and attributes, closes and renames to the final path.
  void commit();
  int64_t size() const;
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::string path_;
  std::unique_ptr<Impl> impl_;
};

class StoreReader {
 public:
  // `store_path`: the store directory or its manifest.json.
  explicit StoreReader(const std::string& store_path);
  ~StoreReader();
  StoreReader(const StoreReader&) = delete;
  StoreReader& operator=(const StoreReader&) = delete;

  int64_t size() const { return manifest_.records; }
  int num_classes() const { return manifest_.num_classes; }
  int ignore_index() const { return manifest_.ignore_index; }
  const std::vector<std::string>& class_names() const { return manifest_.class_names; }
  const std::string& dataset() const { return manifest_.dataset; }
  const std::string& split() const { return manifest_.split; }
  const std::string& label_mapping() const { return manifest_.label_mapping; }
  const Manifest& manifest() const { return manifest_; }
  const std::string& directory() const { return directory_; }
  int num_shards() const { return static_cast<int>(manifest_.shards.size()); }
  // Row-major K x K (see Manifest::cooccurrence).
  const std::vector<int64_t>& cooccurrence() const { return manifest_.cooccurrence; }
  // K entries (1 = class present) of record i; pointer valid for the reader's lifetime.
  const uint8_t* presence(int64_t i) const;
  const std::string& name(int64_t i) const;
  std::pair<uint32_t, uint32_t> shape(int64_t i) const;  // (height, width)

  // Reads record i (global index). verify: CorruptRecordError
  // "<shard file>: record <local i> (<name>): CRC mismatch" when the bytes do not match.
  RawRecord read(int64_t i, bool verify = true) const;
  // The same into *out, reusing its buffers: a caller reading record after record with one
  // RawRecord allocates (and zero-fills) only when a record is larger than any before it.
  void read(int64_t i, RawRecord* out, bool verify = true) const;
  // Shard file path and index inside it of global record i.
  std::pair<std::string, int64_t> locate(int64_t i) const;

 private:
  struct Shard;
  static std::unique_ptr<Shard> open_shard(const std::string& path, const Manifest& manifest, int shard_index,
                                           int64_t expected_records);
  const Shard& shard_of(int64_t i, int64_t* local) const;
  std::string directory_;
  Manifest manifest_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<int64_t> first_;  // global index of each shard's first record
};

}  // namespace segrun::data
