// Single-scale and multi-scale + flip evaluation (engine/evaluator.h) against an independent
// Python reference (tests/engine/reference_ms_eval.py, /usr/bin/python3 + torch): a toy
// segmentor with hand-set weights whose logits depend on the pixel's colour and, so that flipping
// and sliding windows change the result, on its x position inside the inferred window. Checked:
// the SS and MS metrics and predictions in whole and slide mode, that the SS half of an MS
// evaluation is exactly the plain scales = [1.0], flip = false evaluation, that the MS half
// equals the single-view-set path run with scales = ms_scales and flip = true, and that two
// ranks (threads) give the metrics of one.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/loader.h"
#include "data/pack.h"
#include "data/store.h"
#include "data/synth.h"
#include "engine/evaluator.h"
#include "dist/inprocess_communicator.h"
#include "engine/model_setup.h"
#include "models/segmentor.h"
#include "tests/data/data_test_util.h"

namespace segrun::engine {
namespace {

using data::testing::run_ranks;
using data::testing::TempDir;

// logits[k, y, x] = gain * (W[k] . img[:, y, x] + b[k]) + a[k] * ramp[x], ramp = linspace(-1, 1)
// over the width of the image (or window) it is given.
class ToySegmentorImpl : public models::SegmentorImpl {
 public:
  ToySegmentorImpl(torch::Tensor w, torch::Tensor b, torch::Tensor a, double gain)
      : w_(register_buffer("w", w)), b_(register_buffer("b", b)), a_(register_buffer("a", a)), gain_(gain) {}
  torch::Tensor forward(const torch::Tensor& images) override {
    const int64_t width = images.size(3);
    torch::Tensor ramp = torch::linspace(-1.0, 1.0, width).view({1, 1, 1, width});
    torch::Tensor lin = torch::einsum("kc,bchw->bkhw", {w_, images}) + b_.view({1, -1, 1, 1});
    return gain_ * lin + a_.view({1, -1, 1, 1}) * ramp;
  }
  torch::Tensor predict_logits(const torch::Tensor& images) override {
    if (batch_sizes) batch_sizes->push_back(images.size(0));
    return forward(images);
  }
  models::LossTerms loss(const torch::Tensor& images, const torch::Tensor& labels) override {
    torch::Tensor ce = torch::nn::functional::cross_entropy(
        forward(images), labels, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(255));
    return {ce, {{"loss_seg", ce}}};
  }
  int64_t num_classes() const override { return w_.size(0); }
  int64_t min_input_side() const override { return 1; }  // a per-pixel model

  std::vector<int64_t>* batch_sizes = nullptr;  // when set, each forward pass's crop count

 private:
  torch::Tensor w_, b_, a_;
  double gain_;
};

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) throw std::runtime_error("cannot read " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class EvaluatorMsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    data::SynthOptions synth;
    synth.out = *dir_ / "raw";
    synth.train = 1;
    synth.val = 3;
    synth.height = 40;
    synth.width = 56;
    synth.seed = 5;
    data::synthesize(synth);
    run_ranks(1, [&](dist::Communicator& comm) {
      data::PackOptions pack;
      pack.root = synth.out;
      pack.split = "validation";
      pack.out = *dir_ / "val";
      manifest_ = new std::string(data::pack_store(pack, comm).manifest);
    });
    store_ = new data::StoreReader(*manifest_);
    const int64_t k = store_->num_classes();
    // A nearest-class-mean colour classifier (-|x - mu_k|^2 up to a per-pixel constant:
    // W[k] = 2 mu_k, b[k] = -|mu_k|^2) from the validation pixels themselves, so the IoUs are
    // far from zero; classes absent from the ground truth get a bias of -1000. The ramp term
    // (a) makes flipping and the window position matter.
    torch::Tensor sums = torch::zeros({k, 3}, torch::kFloat64);
    torch::Tensor counts = torch::zeros({k}, torch::kFloat64);
    Config c = config("whole");
    for (int64_t i = 0; i < store_->size(); ++i) {
      data::ValSample v = data::load_val_sample(*store_, i, data::test_transform_options(c.data));
      torch::Tensor label = v.label.flatten();
      torch::Tensor pixels = v.image[0].flatten(1).t().to(torch::kFloat64);  // [HW, 3]
      torch::Tensor valid = label.lt(k);
      sums.index_add_(0, label.masked_select(valid), pixels.index({valid}));
      counts.index_add_(0, label.masked_select(valid), torch::ones({valid.sum().item<int64_t>()}, torch::kFloat64));
    }
    torch::Tensor present = counts.gt(0);
    torch::Tensor means = (sums / counts.clamp_min(1).unsqueeze(1)).to(torch::kFloat32);
    torch::manual_seed(11);
    w_ = new torch::Tensor(2 * means);
    b_ = new torch::Tensor(torch::where(present, -means.pow(2).sum(1), torch::full({k}, -1000.0)));
    a_ = new torch::Tensor(torch::randn({k}) * 0.5);
  }
  static void TearDownTestSuite() {
    delete store_;
    delete manifest_;
    delete w_;
    delete b_;
    delete a_;
    delete dir_;
  }

  static std::shared_ptr<ToySegmentorImpl> model() { return std::make_shared<ToySegmentorImpl>(*w_, *b_, *a_, kGain); }

  static Config config(const std::string& mode) {
    Config c;
    c.data.scale = {56, 40};  // keeps the 40x56 images at their size
    c.eval.mode = mode;
    c.eval.crop = {24, 24};
    c.eval.stride = {16, 16};
    return c;
  }

  static EvalOutcome run(const Config& c, bool multi, int world = 1, std::vector<int64_t>* batch_sizes = nullptr) {
    std::vector<EvalOutcome> outcomes(static_cast<size_t>(world));
    run_ranks(world, [&](dist::Communicator& comm) {
      auto m = model();  // a model per rank (a module is used from one thread)
      if (world == 1) m->batch_sizes = batch_sizes;
      EvalRequest request;
      request.multi_scale = multi;
      outcomes[static_cast<size_t>(comm.rank())] = evaluate(*m, *store_, c, comm, request);
    });
    for (int r = 1; r < world; ++r) {
      EXPECT_EQ(outcomes[static_cast<size_t>(r)].single.mIoU, outcomes[0].single.mIoU);
      EXPECT_EQ(outcomes[static_cast<size_t>(r)].multi.mIoU, outcomes[0].multi.mIoU);
    }
    return outcomes[0];
  }

  // The Python reference's metrics and predictions for `c` (its mode, crop, stride, ms_scales).
  static std::map<std::string, torch::Tensor> reference(const Config& c) {
    c10::Dict<std::string, at::Tensor> input;
    const auto options = data::test_transform_options(c.data);
    for (int64_t i = 0; i < store_->size(); ++i) {
      data::ValSample s = data::load_val_sample(*store_, i, options);
      input.insert("image" + std::to_string(i), s.image);
      input.insert("label" + std::to_string(i), s.label);
      // The decoded BGR bytes, which the reference normalizes itself for eval.ms_base = "image".
      input.insert("original" + std::to_string(i),
                   torch::from_blob(s.original.data, {s.original.rows, s.original.cols, 3}, torch::kUInt8).clone());
    }
    input.insert("ms_base_image", torch::tensor({c.eval.ms_base == "image" ? 1 : 0}));
    input.insert("mean", torch::tensor(std::vector<double>(options.mean.begin(), options.mean.end())));
    input.insert("std", torch::tensor(std::vector<double>(options.std.begin(), options.std.end())));
    input.insert("n", torch::tensor({store_->size()}));
    input.insert("W", *w_);
    input.insert("b", *b_);
    input.insert("a", *a_);
    input.insert("gain", torch::tensor({kGain}));
    input.insert("slide", torch::tensor({c.eval.mode == "slide" ? 1 : 0}));
    input.insert("crop", torch::tensor({c.eval.crop[0], c.eval.crop[1]}));
    input.insert("stride", torch::tensor({c.eval.stride[0], c.eval.stride[1]}));
    input.insert("ms_scales", torch::tensor(c.eval.ms_scales, torch::kFloat64));
    const std::string stem = std::string(SEGRUN_TEST_BINARY_DIR) + "/engine_ms_" + std::to_string(::getpid());
    const std::string in_path = stem + "_in.pt", out_path = stem + "_out.pt";
    {
      const std::vector<char> bytes = torch::pickle_save(c10::IValue(input));
      std::ofstream out(in_path, std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    const std::string command = std::string(SEGRUN_TEST_PYTHON) + " " + SEGRUN_TEST_SOURCE_DIR +
                                "/tests/engine/reference_ms_eval.py '" + in_path + "' '" + out_path + "'";
    const int code = std::system(command.c_str());
    std::remove(in_path.c_str());
    if (code != 0) throw std::runtime_error("reference failed: " + command);
    const c10::IValue loaded = torch::pickle_load(read_bytes(out_path));
    std::remove(out_path.c_str());
    std::map<std::string, torch::Tensor> out;
    for (const auto& item : loaded.toGenericDict()) out[item.key().toStringRef()] = item.value().toTensor();
    return out;
  }

  static void expect_metrics(const SegMetrics& m, const torch::Tensor& ref_metrics, const torch::Tensor& ref_iou) {
    EXPECT_NEAR(m.mIoU, ref_metrics[0].item<double>(), 1e-9);
    EXPECT_NEAR(m.mAcc, ref_metrics[1].item<double>(), 1e-9);
    EXPECT_NEAR(m.aAcc, ref_metrics[2].item<double>(), 1e-9);
    ASSERT_EQ(static_cast<int64_t>(m.iou.size()), ref_iou.size(0));
    for (size_t c = 0; c < m.iou.size(); ++c) {
      const double r = ref_iou[static_cast<int64_t>(c)].item<double>();
      if (std::isnan(r))
        EXPECT_TRUE(std::isnan(m.iou[c])) << "class " << c;
      else
        EXPECT_NEAR(m.iou[c], r, 1e-12) << "class " << c;
    }
  }

  void check_against_reference(const std::string& mode) {
    const Config c = config(mode);
    const EvalOutcome both = run(c, /*multi=*/true);
    ASSERT_TRUE(both.has_multi);
    EXPECT_EQ(both.ms_scales, c.eval.ms_scales);
    auto ref = reference(c);
    // The comparison is well posed: no pixel's top two summed scores are within float noise
    // (float32 sums of <= 12 softmaxed views in [0, 1] differ by ~1e-7 between implementations).
    ASSERT_GT(ref["min_gap"][0].item<double>(), 2e-6);
    expect_metrics(both.single, ref["ss_metrics"], ref["ss_iou"]);
    expect_metrics(both.multi, ref["ms_metrics"], ref["ms_iou"]);
    std::cout << mode << ": mIoU(SS) " << both.single.mIoU << ", mIoU(MS) " << both.multi.mIoU
              << ", smallest top-2 score gap " << ref["min_gap"][0].item<double>() << "\n";
    // MS and flip change the prediction of this model (otherwise the test would prove little).
    EXPECT_NE(both.single.mIoU, both.multi.mIoU);

    // The SS half is the plain evaluation (scales [1.0], no flip), bit for bit.
    const EvalOutcome plain = run(c, /*multi=*/false);
    EXPECT_FALSE(plain.has_multi);
    EXPECT_EQ(plain.single.mIoU, both.single.mIoU);
    EXPECT_EQ(plain.single.aAcc, both.single.aAcc);
    EXPECT_EQ(plain.single.pixels, both.single.pixels);
    // The MS half is the single view set path given the MS views.
    Config as_single = c;
    as_single.eval.scales = c.eval.ms_scales;
    as_single.eval.flip = true;
    const EvalOutcome ms_as_single = run(as_single, /*multi=*/false);
    EXPECT_NEAR(ms_as_single.single.mIoU, both.multi.mIoU, 1e-12);
    EXPECT_NEAR(ms_as_single.single.aAcc, both.multi.aAcc, 1e-12);
  }

  static constexpr double kGain = 1.0;
  static TempDir* dir_;
  static std::string* manifest_;
  static data::StoreReader* store_;
  static torch::Tensor* w_;
  static torch::Tensor* b_;
  static torch::Tensor* a_;
};

TempDir* EvaluatorMsTest::dir_ = nullptr;
std::string* EvaluatorMsTest::manifest_ = nullptr;
data::StoreReader* EvaluatorMsTest::store_ = nullptr;
torch::Tensor* EvaluatorMsTest::w_ = nullptr;
torch::Tensor* EvaluatorMsTest::b_ = nullptr;
torch::Tensor* EvaluatorMsTest::a_ = nullptr;

TEST_F(EvaluatorMsTest, WholeImageSsAndMsMatchReference) { check_against_reference("whole"); }

TEST_F(EvaluatorMsTest, SlidingWindowSsAndMsMatchReference) { check_against_reference("slide"); }

// eval.ms_base = "image" (mmseg 1.x TestTimeAug, MTA-CLIP): the multi-scale views scale the
// decoded image, not the one resized to data.scale; the single-scale set is unchanged.
TEST_F(EvaluatorMsTest, MultiScaleViewsOfTheDecodedImage) {
  Config c = config("whole");
  c.data.scale = {28, 20};  // the 56x40 images are tested at 28x20
  const EvalOutcome from_scale = run(c, /*multi=*/true);
  c.eval.ms_base = "image";
  const EvalOutcome from_image = run(c, /*multi=*/true);
  auto ref = reference(c);
  ASSERT_GT(ref["min_gap"][0].item<double>(), 2e-6);
  expect_metrics(from_image.single, ref["ss_metrics"], ref["ss_iou"]);
  expect_metrics(from_image.multi, ref["ms_metrics"], ref["ms_iou"]);
  EXPECT_EQ(from_image.single.mIoU, from_scale.single.mIoU);
  EXPECT_NE(from_image.multi.mIoU, from_scale.multi.mIoU);  // the base matters for this model
  EXPECT_EQ(run(c, /*multi=*/true, /*world=*/2).multi.mIoU, from_image.multi.mIoU);
}

// eval.batch = 5: the crops of a view and its mirror go through the model five at a time, in
// fewer forward passes, and the metrics are still the reference's (the toy model treats each crop
// of a batch alone).
TEST_F(EvaluatorMsTest, EvalBatchInfersCropsTogetherWithTheSameMetrics) {
  for (const std::string mode : {"slide", "whole"}) {
    Config c = config(mode);
    std::vector<int64_t> one_by_one, batched;
    const EvalOutcome single = run(c, /*multi=*/true, 1, &one_by_one);
    c.eval.batch = 5;
    const EvalOutcome together = run(c, /*multi=*/true, 1, &batched);
    auto ref = reference(c);
    ASSERT_GT(ref["min_gap"][0].item<double>(), 2e-6);
    expect_metrics(together.single, ref["ss_metrics"], ref["ss_iou"]);
    expect_metrics(together.multi, ref["ms_metrics"], ref["ms_iou"]);
    EXPECT_EQ(together.multi.pixels, single.multi.pixels) << mode;
    // Every crop is inferred once either way; batched, in fewer passes of at most 5.
    const auto sum = [](const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); };
    EXPECT_EQ(sum(batched), sum(one_by_one)) << mode;
    EXPECT_EQ(*std::max_element(one_by_one.begin(), one_by_one.end()), 1) << mode;
    EXPECT_LE(*std::max_element(batched.begin(), batched.end()), 5) << mode;
    EXPECT_GT(*std::max_element(batched.begin(), batched.end()), 1) << mode;
    EXPECT_LT(batched.size(), one_by_one.size()) << mode;
    std::cout << mode << ": " << sum(batched) << " crops in " << one_by_one.size() << " passes one by one, "
              << batched.size() << " with eval.batch = 5\n";
  }
}

// Every model segrun builds gives each crop of a batch the logits it gives the crop alone (eval
// mode: no batch statistics, no coupling between images), so eval.batch changes only float
// rounding. The tiny configs' models, random weights, the sliding windows of an image and its
// mirror (12 crops) one at a time and five at a time.
TEST(EvalBatch, EachModelGivesABatchOfCropsTheLogitsOfEachCropAlone) {
  torch::NoGradGuard no_grad;
  auto comm = std::make_shared<dist::InProcessCommunicator>(0, std::make_shared<dist::InProcessGroup>(1));
  for (const std::string name : {"demo_tiny.toml", "clip_sp/tiny.toml", "clip_sp/tiny_vit.toml",
                                 "mask2former/tiny.toml", "mta_clip/tiny.toml"}) {
    Config c = load_config(std::string(SEGRUN_TEST_SOURCE_DIR) + "/configs/" + name, {"model.pretrained=none"});
    c.eval.mode = "slide";
    c.eval.crop = {48, 48};
    c.eval.stride = {24, 24};
    torch::manual_seed(3);
    auto model = build_model(c, data::class_names(data::parse_layout(c.data.layout)), {}, comm, false);
    model->eval();
    const torch::Tensor image = torch::randn({1, 3, 64, 96});  // 2 x 3 windows, 12 crops with the mirror
    const std::vector<torch::Tensor> images{image, image.flip({3})};
    const std::vector<torch::Tensor> alone = infer_logits(*model, images, c.eval);
    c.eval.batch = 5;
    const std::vector<torch::Tensor> together = infer_logits(*model, images, c.eval);
    ASSERT_EQ(alone.size(), 2u);
    for (size_t k = 0; k < images.size(); ++k) {
      ASSERT_EQ(together[k].sizes(), alone[k].sizes()) << name;
      ASSERT_EQ(alone[k].sizes(), (std::vector<int64_t>{1, model->num_classes(), 64, 96})) << name;
      const double scale = alone[k].abs().max().item<double>();
      const double difference = (together[k] - alone[k]).abs().max().item<double>();
      EXPECT_GT(scale, 1e-3) << name;
      EXPECT_LT(difference, 1e-5 * scale) << name << " image " << k;
      std::cout << name << " image " << k << ": largest logit " << scale << ", largest difference " << difference
                << "\n";
    }
    // The image and its mirror give different logits (the check is not comparing constants).
    EXPECT_GT((alone[0] - alone[1]).abs().max().item<double>(), 1e-3 * alone[0].abs().max().item<double>()) << name;
  }
}

// An image thinner than the backbone accepts (a panorama at the test scale, or a small image at
// a multi-scale 0.5) is padded with zeros to the model's min_input_side() and its logits are those
// of the padded image where the image is: every model, whole and sliding-window inference (the
// image is smaller than the crop there too). The reference pads by hand.
TEST(EvalSmallImages, AreInferredPaddedToTheBackbonesSmallestInput) {
  torch::NoGradGuard no_grad;
  auto comm = std::make_shared<dist::InProcessCommunicator>(0, std::make_shared<dist::InProcessGroup>(1));
  for (const std::string name : {"demo_tiny.toml", "clip_sp/tiny.toml", "clip_sp/tiny_vit.toml",
                                 "mask2former/tiny.toml", "mta_clip/tiny.toml"}) {
    for (const std::string mode : {"whole", "slide"}) {
      Config c = load_config(std::string(SEGRUN_TEST_SOURCE_DIR) + "/configs/" + name, {"model.pretrained=none"});
      c.eval.mode = mode;
      c.eval.crop = {48, 48};
      c.eval.stride = {24, 24};
      torch::manual_seed(5);
      auto model = build_model(c, data::class_names(data::parse_layout(c.data.layout)), {}, comm, false);
      model->eval();
      const int64_t min_side = model->min_input_side();
      ASSERT_GE(min_side, 16) << name;
      // Too low (one window: the image is under the crop too); too low and too narrow; too low and
      // wide enough for four 48-wide windows in slide mode, each padded on its own.
      const int64_t small = min_side / 2 + 3;
      for (const auto& [height, width] : {std::pair<int64_t, int64_t>{small, 40}, {small, small + 2}, {small, 100}}) {
        const std::string what = name + " " + mode + " " + std::to_string(height) + "x" + std::to_string(width);
        const torch::Tensor image = torch::randn({1, 3, height, width});
        EXPECT_THROW(model->predict_logits(image), ModelError) << what << ": the image is too small unpadded";
        const std::vector<torch::Tensor> logits = infer_logits(*model, {image}, c.eval);
        ASSERT_EQ(logits.size(), 1u);
        ASSERT_EQ(logits[0].sizes(), (std::vector<int64_t>{1, model->num_classes(), height, width})) << what;
        // The reference: each window (the whole image, or mmseg's 48-wide windows every 24 pixels,
        // the last flush with the border) padded by hand, its logits cut back, overlaps averaged.
        const int64_t window = mode == "slide" ? std::min<int64_t>(48, width) : width;
        torch::Tensor sum = torch::zeros({1, model->num_classes(), height, width});
        torch::Tensor count = torch::zeros({1, 1, height, width});
        for (int64_t x1 = 0;; x1 += 24) {
          const int64_t x2 = std::min(x1 + window, width), start = x2 - window;
          torch::Tensor padded = torch::zeros({1, 3, min_side, std::max(window, min_side)});
          padded.slice(2, 0, height).slice(3, 0, window).copy_(image.slice(3, start, x2));
          sum.slice(3, start, x2) += model->predict_logits(padded).slice(2, 0, height).slice(3, 0, window);
          count.slice(3, start, x2) += 1;
          if (x2 == width) break;
        }
        const torch::Tensor expected = sum / count;
        const double scale = expected.abs().max().item<double>();
        EXPECT_GT(scale, 1e-3) << what;
        EXPECT_LT((logits[0] - expected).abs().max().item<double>(), 1e-5 * scale) << what;
      }
    }
  }
}

TEST_F(EvaluatorMsTest, TwoRanksGiveTheMetricsOfOne) {
  const Config c = config("whole");
  const EvalOutcome one = run(c, true, 1);
  const EvalOutcome two = run(c, true, 2);
  EXPECT_EQ(two.single.mIoU, one.single.mIoU);
  EXPECT_EQ(two.multi.mIoU, one.multi.mIoU);
  EXPECT_EQ(two.multi.pixels, one.multi.pixels);
}

TEST_F(EvaluatorMsTest, ViewsAndRecord) {
  const auto views = test_views({0.5, 1.0}, true);
  ASSERT_EQ(views.size(), 4u);
  EXPECT_EQ(views[1].scale, 0.5);
  EXPECT_TRUE(views[1].flip);
  EXPECT_EQ(test_views({0.5, 1.0}, false).size(), 2u);

  EvalOutcome o;
  o.single.mIoU = 40.0;
  o.single.iou = {0.5, std::nan("")};
  o.single.acc = {0.5, std::nan("")};
  EXPECT_FALSE(eval_record_json(o, {"a", "b"}).contains("mIoU_ms"));
  o.has_multi = true;
  o.multi.mIoU = 45.5;
  o.multi.aAcc = 80.0;
  o.multi.mAcc = 50.0;
  o.multi.iou = {0.455, std::nan("")};
  o.multi.acc = {0.5, std::nan("")};
  o.ms_scales = {0.5, 1.0};
  const nlohmann::ordered_json record = eval_record_json(o, {"a", "b"});
  EXPECT_EQ(record.at("mIoU_ms"), 45.5) << record;
  EXPECT_EQ(record.at("aAcc_ms"), 80.0) << record;
  EXPECT_NEAR(record.at("per_class_ms").at("a").get<double>(), 45.5, 1e-9) << record;
  EXPECT_TRUE(record.at("per_class_ms").at("b").is_null()) << record;
  EXPECT_EQ(record.at("ms_scales"), nlohmann::ordered_json({0.5, 1.0})) << record;
  EXPECT_EQ(record.at("ms_flip"), true) << record;
}

}  // namespace
}  // namespace segrun::engine
