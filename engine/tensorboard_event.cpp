// TensorBoard Event records in protobuf's wire format (engine/tensorboard_event.h).
#include "engine/tensorboard_event.h"

#include <cstring>

namespace segrun::engine {
namespace {

// Protobuf wire types.
constexpr uint32_t kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_tag(std::string& out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }

// int32 and int64 fields are varints of the value sign-extended to 64 bits.
void put_int(std::string& out, uint32_t field, int64_t value) {
  put_tag(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(value));
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_tag(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

void put_double(std::string& out, uint32_t field, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  put_tag(out, field, kFixed64);
  append_little_endian(out, bits, 8);
}

void put_float(std::string& out, uint32_t field, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  put_tag(out, field, kFixed32);
  append_little_endian(out, bits, 4);
}

// Event fields 1 and 2 (proto3: zero is not written).
std::string event_head(double wall_time, int64_t step) {
  std::string event;
  if (wall_time != 0) put_double(event, 1, wall_time);
  if (step != 0) put_int(event, 2, step);
  return event;
}

std::string summary_value_head(const std::string& tag) {
  std::string value;
  if (!tag.empty()) put_bytes(value, 1, tag);
  return value;
}

}  // namespace

void append_little_endian(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::string encode_file_version_event(double wall_time) {
  std::string event = event_head(wall_time, 0);
  put_bytes(event, 3, "brain.Event:2");
  return event;
}

std::string encode_session_start_event(double wall_time, int64_t step) {
  std::string session_log;
  put_int(session_log, 1, 1);  // status: SessionLog.START
  std::string event = event_head(wall_time, step);
  put_bytes(event, 7, session_log);
  return event;
}

std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, float>>& values) {
  std::string summary;
  for (const auto& [tag, number] : values) {
    std::string value = summary_value_head(tag);
    put_float(value, 2, number);
    put_bytes(summary, 1, value);
  }
  std::string event = event_head(wall_time, step);
  put_bytes(event, 5, summary);
  return event;
}

std::string encode_image_event(double wall_time, int64_t step, const std::string& tag, const TensorBoardImage& image) {
  std::string encoded_image;
  if (image.height != 0) put_int(encoded_image, 1, image.height);
  if (image.width != 0) put_int(encoded_image, 2, image.width);
  if (image.colorspace != 0) put_int(encoded_image, 3, image.colorspace);
  if (!image.encoded.empty()) put_bytes(encoded_image, 4, image.encoded);
  std::string value = summary_value_head(tag);
  put_bytes(value, 4, encoded_image);
  std::string summary;
  put_bytes(summary, 1, value);
  std::string event = event_head(wall_time, step);
  put_bytes(event, 5, summary);
  return event;
}

}  // namespace segrun::engine
