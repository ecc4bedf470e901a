#include "data/synth.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "core/rng.h"

namespace segrun::data {
namespace {

namespace fs = std::filesystem;

// Appearance of one raw label value: independent of the seed, so every image and every split
// agree on what a class looks like.
struct Appearance {
  double base[3];
  double frequency;  // radians per pixel
  double cos_t, sin_t;
  double amplitude;
};

Appearance appearance_of(int raw) {
  SampleRng rng(0x5E6A11ull, static_cast<uint64_t>(raw), 0, RngPurpose::kSynth);
  Appearance a{};
  for (double& c : a.base) c = rng.uniform(30.0, 225.0);
  a.frequency = rng.uniform(0.15, 0.9);
  double theta = rng.uniform(0.0, M_PI);
  a.cos_t = std::cos(theta);
  a.sin_t = std::sin(theta);
  a.amplitude = rng.uniform(15.0, 40.0);
  return a;
}

void make_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SEGRUN_CHECK(!ec && fs::is_directory(dir), DataError,
               dir.string() << ": cannot create output directory (" << ec.message() << ")");
}

void write_image(const fs::path& path, const cv::Mat& mat, const std::vector<int>& params) {
  bool ok = false;
  try {
    ok = cv::imwrite(path.string(), mat, params);
  } catch (const cv::Exception& e) {
    ok = false;
  }
  SEGRUN_CHECK(ok, DataError, path.string() << ": cannot write file (output directory not writable?)");
}

// One scene: raw label map (CV_8U) and BGR image (CV_8UC3).
void make_scene(const SynthOptions& o, const std::vector<int>& classes, const std::vector<int>& other,
                uint64_t split_id, int64_t index, cv::Mat* image, cv::Mat* label) {
  SampleRng rng(o.seed, split_id, static_cast<uint64_t>(index), RngPurpose::kSynth);
  const int h = o.height, w = o.width;
  const int regions = static_cast<int>(rng.randint(3, 7));
  struct Site {
    double y, x, weight;
    int raw;
  };
  std::vector<Site> sites;
  for (int r = 0; r < regions; ++r) {
    Site s{rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.7, 1.3), 0};
    s.raw = rng.bernoulli(0.1) ? other[rng.randint(0, static_cast<int64_t>(other.size()))]
                               : classes[rng.randint(0, static_cast<int64_t>(classes.size()))];
    sites.push_back(s);
  }
  *label = cv::Mat(h, w, CV_8U);
  for (int y = 0; y < h; ++y) {
    auto* row = label->ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x) {
      double best = 1e300;
      int raw = 0;
      for (const auto& s : sites) {
        double d = ((y - s.y) * (y - s.y) + (x - s.x) * (x - s.x)) * s.weight;
        if (d < best) {
          best = d;
          raw = s.raw;
        }
      }
      row[x] = static_cast<uint8_t>(raw);
    }
  }
  // One ellipse on top, of a used class.
  const int ellipse_raw = classes[rng.randint(0, static_cast<int64_t>(classes.size()))];
  cv::Point center(static_cast<int>(rng.randint(0, w)), static_cast<int>(rng.randint(0, h)));
  cv::Size axes(static_cast<int>(rng.randint(w / 10 + 1, w / 3 + 2)),
                static_cast<int>(rng.randint(h / 10 + 1, h / 3 + 2)));
  double angle = rng.uniform(0, 180);
  cv::ellipse(*label, center, axes, angle, 0, 360, cv::Scalar(ellipse_raw), cv::FILLED, cv::LINE_8);

  std::vector<Appearance> look(256);
  std::vector<bool> have(256, false);
  *image = cv::Mat(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y) {
    const auto* lrow = label->ptr<uint8_t>(y);
    auto* irow = image->ptr<cv::Vec3b>(y);
    for (int x = 0; x < w; ++x) {
      int raw = lrow[x];
      if (!have[raw]) {
        look[raw] = appearance_of(raw);
        have[raw] = true;
      }
      const Appearance& a = look[raw];
      double stripe = a.amplitude * std::sin(a.frequency * (x * a.cos_t + y * a.sin_t));
      for (int c = 0; c < 3; ++c) {
        double v = a.base[c] + stripe + rng.uniform(-12.0, 12.0);
        irow[x][c] = cv::saturate_cast<uint8_t>(v);
      }
    }
  }
}

std::string format(const char* fmt, int64_t a, int64_t b = 0) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), fmt, static_cast<long long>(a), static_cast<long long>(b));
  return buf;
}

// The two splits a synthetic dataset has: record counts and the SampleRng stream of each.
struct Split {
  int count;
  uint64_t id;
  const std::string& folder;
};

std::array<Split, 2> synth_splits(const SynthOptions& o) {
  const LayoutInfo& layout = layout_info(o.layout);
  return {Split{o.train, 0, layout.train_folder}, Split{o.val, 1, layout.val_folder}};
}

void write_ade20k(const SynthOptions& o, const std::vector<int>& classes, const fs::path& out) {
  const std::vector<int>& other = layout_info(o.layout).synth_other_labels;
  const fs::path root = out / "ADEChallengeData2016";
  const char* stems[2] = {"ADE_train_%08lld", "ADE_val_%08lld"};
  const std::array<Split, 2> splits = synth_splits(o);
  for (int s = 0; s < 2; ++s) {
    const fs::path images = root / "images" / splits[s].folder;
    const fs::path annotations = root / "annotations" / splits[s].folder;
    make_dir(images);
    make_dir(annotations);
    for (int64_t i = 0; i < splits[s].count; ++i) {
      cv::Mat image, label;
      make_scene(o, classes, other, splits[s].id, i, &image, &label);
      const std::string stem = format(stems[s], i + 1);
      write_image(images / (stem + ".jpg"), image, {cv::IMWRITE_JPEG_QUALITY, 92});
      write_image(annotations / (stem + ".png"), label, {});
    }
  }
}

void write_cityscapes(const SynthOptions& o, const std::vector<int>& classes, const fs::path& out) {
  const std::vector<int>& other = layout_info(o.layout).synth_other_labels;
  const std::vector<std::string> cities[2] = {{"aachen", "bochum", "bremen"}, {"frankfurt", "lindau"}};
  const std::array<Split, 2> splits = synth_splits(o);
  for (int s = 0; s < 2; ++s) {
    for (int64_t i = 0; i < splits[s].count; ++i) {
      const std::string& city = cities[s][static_cast<size_t>(i) % cities[s].size()];
      const fs::path images = out / "leftImg8bit" / splits[s].folder / city;
      const fs::path annotations = out / "gtFine" / splits[s].folder / city;
      make_dir(images);
      make_dir(annotations);
      cv::Mat image, label;
      make_scene(o, classes, other, splits[s].id, i, &image, &label);
      const std::string stem = city + format("_%06lld_%06lld", i, 19);
      write_image(images / (stem + "_leftImg8bit.png"), image, {});
      write_image(annotations / (stem + "_gtFine_labelIds.png"), label, {});
    }
  }
}

}  // namespace

std::vector<int> synth_raw_classes(const SynthOptions& o) {
  // Train ids spread evenly over 0..K-1, each drawn as the first raw value that maps to it.
  const LayoutInfo& layout = layout_info(o.layout);
  const int k = static_cast<int>(layout.class_names.size());
  const int n = o.classes_used > 0 ? std::min(o.classes_used, k) : layout.synth_classes;
  std::vector<int> ids;
  for (int i = 0; i < n; ++i) {
    const int train_id = n == 1 ? 0 : static_cast<int>(std::lround(i * static_cast<double>(k - 1) / (n - 1)));
    for (int raw = 0; raw < 256; ++raw) {
      if (layout.label_lut[raw] == train_id) {
        ids.push_back(raw);
        break;
      }
    }
  }
  return ids;
}

void synthesize(const SynthOptions& o) {
  SEGRUN_CHECK(!o.out.empty(), DataError, "synthesize: empty output directory");
  SEGRUN_CHECK(o.height >= 8 && o.width >= 8 && o.train >= 0 && o.val >= 0, DataError,
               o.out << ": synthetic size " << o.height << "x" << o.width << " too small (min 8x8)");
  const std::vector<int> classes = synth_raw_classes(o);
  const fs::path out(o.out);
  make_dir(out);
  switch (o.layout) {
    case Layout::kAde20k: write_ade20k(o, classes, out); return;
    case Layout::kCityscapes: write_cityscapes(o, classes, out); return;
  }
  SEGRUN_THROW(DataError, o.out << ": no synthetic writer for dataset layout " << static_cast<int>(o.layout));
}

}  // namespace segrun::data
