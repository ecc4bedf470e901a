// libFuzzer target: the store record decoder, i.e. what the train/eval loaders do with a record's
// bytes: CRC-32 (data/store record_crc), image decode (BGR uint8), label decode (8-bit single
// channel), then the train transform (resize, crop, flip, photometric, normalize, pad) and the
// test transform. Input: 2 bytes (little endian) = length of the image part, the image bytes,
// the label bytes. OpenCV's decoders run uninstrumented; segrun's checks and transforms are.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <opencv2/core.hpp>

#include "core/error.h"
#include "core/rng.h"
#include "data/store.h"
#include "data/transforms.h"
#include "fuzz/fuzz_util.h"

using segrun::fuzz::fuzz_check;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Fuzzed headers may announce gigapixel images; OpenCV would allocate them (a memory limit,
  // not a bug). 4 Mpixel is above any segmentation training image.
  setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "4194304", 1);
  cv::setNumThreads(0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t image_size = std::min<size_t>(data[0] | (data[1] << 8), size - 2);
  const std::vector<uint8_t> image_bytes(data + 2, data + 2 + image_size);
  const std::vector<uint8_t> label_bytes(data + 2 + image_size, data + size);
  const uint32_t crc = segrun::data::record_crc(image_bytes, label_bytes);
  fuzz_check(crc == segrun::data::record_crc(image_bytes, label_bytes), "record_crc is not deterministic");

  cv::Mat image, label;
  try {
    image = segrun::data::decode_image(image_bytes, "fuzz image");
  } catch (const segrun::DataError&) {
    image = cv::Mat();
  }
  try {
    label = segrun::data::decode_label(label_bytes, "fuzz label");
  } catch (const segrun::DataError&) {
    label = cv::Mat();
  }
  if (!image.empty()) {
    fuzz_check(image.type() == CV_8UC3, "decode_image returned a non-BGR image");
    segrun::data::TestTransformOptions test;
    test.scale = {128, 64};
    const cv::Mat t = segrun::data::test_transform(image, test);
    fuzz_check(t.type() == CV_32FC3 && !t.empty(), "test_transform output");
  }
  if (!label.empty()) fuzz_check(label.type() == CV_8UC1, "decode_label returned a non-8-bit label");
  if (!image.empty() && !label.empty() && image.size() == label.size()) {
    segrun::data::TrainTransformOptions o;
    o.crop = {32, 32};
    o.scale = {128, 64};
    segrun::SampleRng rng(crc);
    const segrun::data::Sample s = segrun::data::train_transform(image, label, o, rng);
    fuzz_check(s.image.rows == 32 && s.image.cols == 32 && s.label.rows == 32 && s.label.cols == 32,
               "train_transform did not pad/crop to the crop size");
  }
  return 0;
}
