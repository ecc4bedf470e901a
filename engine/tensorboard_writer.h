#pragma once
// TensorBoard event files: what `tensorboard --logdir runs/` reads. One writer owns one file,
// <dir>/events.out.tfevents.<unix seconds>.<host>.<pid> (TensorBoard reads every such file of a
// folder, in name order, so a resumed run adds a file beside the earlier ones; <unix seconds> is
// raised past theirs where needed, so that the new file sorts after every file already there).
// A resumed run passes purge_step, its first step: the file then starts, after file_version, with
// an Event at purge_step carrying SessionLog START, as PyTorch's SummaryWriter(purge_step=) writes.
// TensorBoard's Python event loader (EventAccumulator: TensorBoard before 2.5, --load_fast=false)
// takes it for a restart and drops every event with a step >= purge_step read before it: the
// abandoned steps of the earlier files. Its Rust data server (--load_fast, the default where
// installed) ignores it and, per tag, drops the points at steps >= a step logged again, so the
// resumed run's tags are clean but a tag it logs only later (the final validation) keeps the
// abandoned point.
// Format (TensorFlow's TFRecord framing of Event records, engine/tensorboard_event.h): each record is
//   uint64 length (little endian) | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data
// where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 and data is a serialized Event; the
// first Event carries file_version "brain.Event:2". Records are flushed as they are written, so
// a killed run leaves every record it wrote complete (a reader stops at a torn last one).
// Only rank 0 writes (the trainer's choice). Not thread-safe; IoError naming the file when it
// cannot be created or written.

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace segrun::engine {

// CRC-32C (Castagnoli) of data, and TensorFlow's mask of it.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

class TensorBoardWriter {
 public:
  // Creates dir when missing and a new event file in it; purge_step: a resumed run's first step
  // (above).
  explicit TensorBoardWriter(const std::string& dir, std::optional<int64_t> purge_step = std::nullopt);
  const std::string& path() const { return path_; }

  void add_scalar(const std::string& tag, double value, int64_t step);
  // Several scalars of one step in one record (one write and flush).
  void add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step);
  // A PNG-encoded image (RGB or grey) of width x height pixels.
  void add_png(const std::string& tag, const std::vector<uint8_t>& png, int width, int height, int channels,
               int64_t step);

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::ofstream out_;
};

// The scalars of one metrics.jsonl record (core/run_folder.h) at step record["iter"]: each number
// of a "train" record as train/<key> (loss and its parts, lr, images_per_s, data_wait_fraction,
// sync_wait_fraction, ...), each number of a "val" or "eval" record as val/<key> (mIoU, mAcc,
// aAcc, mIoU_ms, label_mAP, ...) and its per-class maps as val/IoU.<class>, val/Acc.<class> and
// val/IoU_ms.<class> (mmsegmentation's names), all in one record. Nulls (undefined IoU) and other
// fields are skipped.
void add_metrics_record(TensorBoardWriter& writer, const nlohmann::ordered_json& record);

}  // namespace segrun::engine
