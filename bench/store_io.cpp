// Store benchmark (issue: performance, "Store"): pack throughput and sequential read throughput of
// the HDF5 store against raw reads of the same files, measured in the same run.
//  - pack: data::pack_store of N synthetic ADE20K-layout images (JPEG + PNG label; decode of the
//    label, train-id mapping, presence, CRC, HDF5 shard build and atomic write), images/s and
//    source MB/s, next to a raw copy of the same source files (read + write, `cp` speed);
//  - read: every record through StoreReader::read (HDF5 reads of the encoded bytes, with and
//    without the CRC check) against reading the shard files front to back with read(2) in 1 MiB
//    chunks and against `cat SHARDS > /dev/null`. Ratio = raw time / store time for the same
//    records (target >= 0.8). Page cache warm on both sides (the files fit in memory), or with
//    --cold 1 the shard files' pages dropped before every read (posix_fadvise DONTNEED), so both
//    sides read from the device as a store larger than memory does; the order of the sides
//    alternates over rounds; medians and [min-max] are printed. The store side reads into one
//    reused RawRecord, as a loader worker does;
//  - the record check alone: record_crc (ISA-L) against zlib's crc32 of the same 128 KiB buffer,
//    in cache.
//   bench_store_io [--images 128] [--height 512] [--width 683] [--rounds 5] [--shards 1] [--cold 0|1]
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "bench/guarded_main.h"
#include "data/pack.h"
#include "data/store.h"
#include "data/synth.h"
#include "dist/communicator.h"
#include "dist/rank_context.h"

namespace fs = std::filesystem;
using namespace segrun;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

uint64_t files_bytes(const std::vector<fs::path>& files) {
  uint64_t total = 0;
  for (const auto& f : files) total += fs::file_size(f);
  return total;
}

std::vector<fs::path> files_under(const fs::path& dir, const std::string& extension) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file() && (extension.empty() || entry.path().extension() == extension))
      out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Drops the files' pages from the page cache (posix_fadvise DONTNEED: no root needed; the pages
// are clean since pack fsyncs), so the next read comes from the device.
void evict(const std::vector<fs::path>& files) {
  for (const auto& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// read(2) of every file front to back in 1 MiB chunks; returns bytes read.
uint64_t raw_read(const std::vector<fs::path>& files) {
  std::vector<char> buffer(1 << 20);
  uint64_t total = 0;
  for (const auto& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) {
      std::perror(f.c_str());
      std::exit(1);
    }
    for (ssize_t n; (n = ::read(fd, buffer.data(), buffer.size())) > 0;) total += static_cast<uint64_t>(n);
    ::close(fd);
  }
  return total;
}

// Copies every file (read + write, 1 MiB chunks) into `to`.
void raw_copy(const std::vector<fs::path>& files, const fs::path& to) {
  fs::create_directories(to);
  std::vector<char> buffer(1 << 20);
  int index = 0;
  for (const auto& f : files) {
    const int in = ::open(f.c_str(), O_RDONLY);
    const int out = ::open((to / std::to_string(index++)).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (ssize_t n; (n = ::read(in, buffer.data(), buffer.size())) > 0;)
      if (::write(out, buffer.data(), static_cast<size_t>(n)) != n) std::exit(1);
    ::fsync(out);
    ::close(in);
    ::close(out);
  }
}

// "median [min-max]" of the values, each printed with `format`.
std::string median_range(std::vector<double> v, const char* format = "%.1f") {
  std::sort(v.begin(), v.end());
  char median[64], low[64], high[64];
  std::snprintf(median, sizeof median, format, v[v.size() / 2]);
  std::snprintf(low, sizeof low, format, v.front());
  std::snprintf(high, sizeof high, format, v.back());
  return std::string(median) + " [" + low + "-" + high + "]";
}

// GB/s of record_crc (ISA-L) and of zlib's crc32 over one 128 KiB buffer (a record's size) in
// cache, alternating, `rounds` rounds of 0.1 s each.
std::pair<std::vector<double>, std::vector<double>> crc_rates(int rounds) {
  std::vector<uint8_t> image(128 * 1024), none;
  for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<uint8_t>(i * 131 + 7);
  std::vector<double> isal, zlib;
  volatile uint32_t sink = 0;  // keeps the calls from being optimized away
  for (int r = 0; r < 2 * rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t calls = 0;
    while (seconds_since(t0) < 0.1) {
      for (int k = 0; k < 64; ++k, ++calls)
        sink += r % 2 == 0 ? data::record_crc(image, none)
                           : static_cast<uint32_t>(crc32(0L, image.data(), static_cast<uInt>(image.size())));
    }
    (r % 2 == 0 ? isal : zlib).push_back(calls * image.size() / 1e9 / seconds_since(t0));
  }
  (void)sink;  // read by nobody: clang's -Wunused-but-set-variable would flag it
  return {isal, zlib};
}

}  // namespace

int run(int argc, char** argv) {
  auto flags = bench::parse_flags(
      "bench_store_io", argc, argv,
      {{"images", "128"}, {"height", "512"}, {"width", "683"}, {"rounds", "5"}, {"shards", "1"}, {"cold", "0"}});
  bench::log_warnings_only();
  const int images = std::stoi(flags["images"]), rounds = std::max(1, std::stoi(flags["rounds"]));
  const int shards = std::stoi(flags["shards"]);
  const bool cold = flags["cold"] == "1";
  const fs::path tmp = fs::temp_directory_path() / ("bench_store_io_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  data::SynthOptions synth;
  synth.layout = data::Layout::kAde20k;
  synth.out = (tmp / "raw").string();
  synth.train = images;
  synth.val = 1;
  synth.height = std::stoi(flags["height"]);
  synth.width = std::stoi(flags["width"]);
  data::synthesize(synth);
  const std::vector<fs::path> sources = files_under(tmp / "raw", "");
  const double source_mb = static_cast<double>(files_bytes(sources)) / 1e6;
  auto comm = dist::make_communicator("mpi", dist::singleton_context());

  // Pack vs raw copy of the same source files, alternating.
  std::vector<double> pack_s, copy_s;
  std::string store_dir;
  for (int r = 0; r < rounds; ++r) {
    const fs::path store = tmp / ("store" + std::to_string(r));
    auto t0 = std::chrono::steady_clock::now();
    if (r % 2 == 1) {
      raw_copy(sources, tmp / "copy");
      copy_s.push_back(seconds_since(t0));
      t0 = std::chrono::steady_clock::now();
    }
    data::pack_store({data::Layout::kAde20k, synth.out, "training", store.string(), shards}, *comm);
    pack_s.push_back(seconds_since(t0));
    if (r % 2 == 0) {
      t0 = std::chrono::steady_clock::now();
      raw_copy(sources, tmp / "copy");
      copy_s.push_back(seconds_since(t0));
    }
    fs::remove_all(tmp / "copy");
    if (r + 1 < rounds) fs::remove_all(store);
    store_dir = store.string();
  }

  // Sequential reads: StoreReader (CRC on / off) vs read(2) of the shard files vs cat.
  const data::StoreReader reader(store_dir);
  const std::vector<fs::path> shard_files = files_under(store_dir, ".h5");
  const uint64_t shard_bytes = files_bytes(shard_files);
  uint64_t payload = 0;
  for (int64_t i = 0; i < reader.size(); ++i) {
    const data::RawRecord rec = reader.read(i, false);
    payload += rec.image_bytes.size() + rec.label_bytes.size();
  }
  std::string cat = "cat";
  for (const auto& f : shard_files) cat += " '" + f.string() + "'";
  cat += " > /dev/null";
  std::vector<double> store_crc_s, store_s, raw_s, cat_s;
  for (int r = 0; r < rounds; ++r) {
    for (int side = 0; side < 4; ++side) {
      const int which = (side + r) % 4;
      if (cold) evict(shard_files);
      const auto t0 = std::chrono::steady_clock::now();
      uint64_t bytes = 0;
      if (which == 0 || which == 1) {
        data::RawRecord rec;  // reused, as a loader worker does
        for (int64_t i = 0; i < reader.size(); ++i) {
          reader.read(i, &rec, /*verify=*/which == 0);
          bytes += rec.image_bytes.size() + rec.label_bytes.size();
        }
        (which == 0 ? store_crc_s : store_s).push_back(seconds_since(t0));
      } else if (which == 2) {
        bytes = raw_read(shard_files);
        raw_s.push_back(seconds_since(t0));
      } else {
        if (std::system(cat.c_str()) != 0) return 1;
        cat_s.push_back(seconds_since(t0));
      }
      if (which < 3 && bytes == 0) return 1;
    }
  }

  std::vector<double> pack_ips, pack_over_copy, source_mbs, read_ratio, read_crc_ratio, cat_ratio, store_mbs,
      store_crc_mbs, raw_mbs, cat_mbs;
  for (size_t r = 0; r < pack_s.size(); ++r) {
    pack_ips.push_back(images / pack_s[r]);
    pack_over_copy.push_back(pack_s[r] / copy_s[r]);
    source_mbs.push_back(source_mb / pack_s[r]);
    store_mbs.push_back(payload / 1e6 / store_s[r]);
    store_crc_mbs.push_back(payload / 1e6 / store_crc_s[r]);
    raw_mbs.push_back(shard_bytes / 1e6 / raw_s[r]);
    cat_mbs.push_back(shard_bytes / 1e6 / cat_s[r]);
    read_ratio.push_back(raw_s[r] / store_s[r]);
    read_crc_ratio.push_back(raw_s[r] / store_crc_s[r]);
    cat_ratio.push_back(cat_s[r] / store_crc_s[r]);
  }
  std::printf(
      "%d synthetic ADE20K images %sx%s (%.1f MB of JPEG + PNG), %d shard(s) of %.1f MB (records %.1f MB), "
      "%d rounds, %s; median [min-max]\n\n",
      images, flags["height"].c_str(), flags["width"].c_str(), source_mb, static_cast<int>(shard_files.size()),
      shard_bytes / 1e6, payload / 1e6, rounds,
      cold ? "page cache dropped before every read (posix_fadvise DONTNEED)" : "warm page cache");
  std::printf(
      "| pack | images/s | source MB/s | raw copy of the sources (s) | pack time / copy time |\n"
      "|---|---|---|---|---|\n");
  std::printf("| segrun data pack (1 rank) | %s | %s | %s | %s |\n\n", median_range(pack_ips).c_str(),
              median_range(source_mbs).c_str(), median_range(copy_s, "%.3f").c_str(),
              median_range(pack_over_copy).c_str());
  std::printf("| sequential read | MB/s | ratio to read(2) of the shard files (target >= 0.8) |\n|---|---|---|\n");
  std::printf("| StoreReader::read, CRC checked | %s | **%s** |\n", median_range(store_crc_mbs).c_str(),
              median_range(read_crc_ratio, "%.2f").c_str());
  std::printf("| StoreReader::read, no CRC | %s | **%s** |\n", median_range(store_mbs).c_str(),
              median_range(read_ratio, "%.2f").c_str());
  std::printf("| read(2), 1 MiB chunks, whole shard files | %s | 1 |\n", median_range(raw_mbs).c_str());
  std::printf("| `cat` shard files > /dev/null | %s | (CRC-checked store read / cat: %s) |\n",
              median_range(cat_mbs).c_str(), median_range(cat_ratio, "%.2f").c_str());
  const auto [isal, zlib] = crc_rates(rounds);
  std::printf("\n| CRC-32 of a 128 KiB record, in cache | GB/s |\n|---|---|\n");
  std::printf("| record_crc (ISA-L crc32_gzip_refl) | %s |\n| zlib crc32 (peer) | %s |\n", median_range(isal).c_str(),
              median_range(zlib).c_str());
  fs::remove_all(tmp);
  return 0;
}

int main(int argc, char** argv) { return segrun::bench::guarded_main("bench_store_io", argc, argv, run); }
