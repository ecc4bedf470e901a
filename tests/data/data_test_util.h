#pragma once
// Helpers for the data tests: scoped temp directories, file byte I/O, and run_ranks: an
// in-process world over threads (world sizes >= 1), so packing is tested without mpirun.

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "data/store.h"
#include "dist/communicator.h"
#include "dist/inprocess_communicator.h"

namespace segrun::data::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "segrun-data-XXXXXX").string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    char* made = mkdtemp(buf.data());
    if (!made) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return (std::filesystem::path(path_) / rel).string(); }

 private:
  std::string path_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Flips one byte of record i's image inside its shard file (plain file I/O: the bytes datasets are
// stored uncompressed, so the record's bytes appear verbatim). Returns the shard path.
inline std::string corrupt_record(const std::string& store, int64_t i) {
  std::string shard;
  std::vector<uint8_t> image;
  {
    StoreReader reader(store);
    shard = reader.locate(i).first;
    image = reader.read(i).image_bytes;
  }
  std::vector<uint8_t> file = read_bytes(shard);
  // The whole record is searched (encoded headers are shared between records); the flipped byte
  // sits in the entropy-coded tail, before the end marker.
  auto it = std::search(file.begin(), file.end(), image.begin(), image.end());
  if (it == file.end()) throw std::runtime_error("record bytes not found in " + shard);
  *(it + static_cast<std::ptrdiff_t>(image.size()) - 10) ^= 0xFF;
  write_bytes(shard, file);
  return shard;
}

// Runs fn(comm) on `world` threads of an in-process world (dist/inprocess_communicator.h).
inline void run_ranks(int world, const std::function<void(dist::Communicator&)>& fn) {
  dist::run_inprocess_world(world, fn);
}

}  // namespace segrun::data::testing
