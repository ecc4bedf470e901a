#pragma once
// The bytes of TensorBoard's Event records: the part of TensorFlow's tensorflow/core/util/event.proto
// (Event) and tensorflow/core/framework/summary.proto (Summary, Summary.Value, Summary.Image) that
// segrun writes, serialized in protobuf's wire format by hand (no libprotobuf: one dependency less
// on GPU machines and clusters, and no second protobuf beside the one inside LibTorch).
//
//   Event         1 wall_time double | 2 step int64
//                 | oneof { 3 file_version string | 5 summary Summary | 7 session_log SessionLog }
//   SessionLog    1 status enum (1 START)
//   Summary       1 value repeated Value
//   Summary.Value 1 tag string | oneof { 2 simple_value float | 4 image Image }
//   Summary.Image 1 height int32 | 2 width int32 | 3 colorspace int32 (1 grey, 3 RGB, 4 RGBA)
//                 | 4 encoded_image_string bytes (PNG)
//
// The output is what libprotobuf's SerializeAsString gives for the same message (proto3): fields
// in number order, scalars outside a oneof left out when zero or empty, a oneof member always
// written. tests/engine/read_tensorboard.py decodes it with Google's protobuf runtime.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace segrun::engine {

struct TensorBoardImage {
  int height = 0;
  int width = 0;
  int colorspace = 0;
  std::string encoded;  // PNG bytes
};

// Appends the low `bytes` bytes of value, least significant first (protobuf's fixed32/fixed64,
// and the TFRecord framing's length and checksums in engine/tensorboard_writer.cpp).
void append_little_endian(std::string& out, uint64_t value, int bytes);

// The first record of an event file: wall_time and file_version "brain.Event:2".
std::string encode_file_version_event(double wall_time);
// An Event at `step` with session_log {status: START}: TensorBoard's event loader takes it for a
// restart and drops every event with a step >= `step` read before it (engine/tensorboard_writer.h).
std::string encode_session_start_event(double wall_time, int64_t step);
// An Event at `step` whose summary holds one simple_value per (tag, value).
std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, float>>& values);
// An Event at `step` whose summary holds one image under `tag`.
std::string encode_image_event(double wall_time, int64_t step, const std::string& tag, const TensorBoardImage& image);

}  // namespace segrun::engine
