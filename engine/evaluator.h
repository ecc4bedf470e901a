#pragma once
// Evaluation with mmsegmentation semantics. Each rank takes the validation records r::world (no
// padding, so no record is counted twice), predicts, and accumulates int64 intersection/union
// areas; the areas are then all-reduced, so every rank returns the same metrics.
// Prediction: the image at the test scale (keep-ratio resize, data.scale) is seen through a set
// of views, a view being a scale relative to that and a flag "mirrored": for each view, logits
// from whole-image or sliding-window inference (eval.crop / eval.stride, overlaps averaged; in
// slide mode every scale is slid over separately), mirrored back, resized bilinearly to the
// label's original size, softmaxed and summed; the argmax is the prediction. The crops of a view
// and its mirror go through the model eval.batch at a time.
// Two view sets can be evaluated in one pass over the data (as the papers' Tables report both):
//   single scale (SS), the metrics mIoU / mAcc / aAcc: eval.scales, mirrored too when eval.flip
//     (the defaults [1.0], false give plain single-scale inference);
//   multi-scale + flip (MS, mmseg --aug-test), mIoU_ms / mAcc_ms / aAcc_ms: eval.ms_scales
//     (default 0.5 .. 1.75), each also mirrored; only when EvalRequest::multi_scale.
// A view in both sets is inferred once. The model is put in eval mode and inference runs without
// autograd, in float32, on the device of the model's parameters (images go there, the IoU areas
// are summed there and copied to the host once). A record failing its CRC check stops the
// evaluation, or with data.on_corrupt = "skip" is left out and counted. Not thread-safe.

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/config.h"
#include "data/classes.h"
#include "data/transforms.h"
#include "dist/communicator.h"
#include "engine/metrics.h"

namespace segrun::data {
class StoreReader;
}
namespace segrun::models {
class SegmentorImpl;
}

namespace segrun::engine {

// A validation image beside its ground truth and prediction in the layout's colours (data/palette.h):
// one BGR panel, image | ground truth | prediction, at the label's original size.
struct PredictionPicture {
  std::string name;  // the record's source stem
  cv::Mat panel;
};

struct EvalRequest {
  std::string save_pred_dir;  // when set, each prediction is written as <dir>/<name>.png (train
                              // ids): the multi-scale one when multi_scale, else the single-scale one
  bool color = false;         // with save_pred_dir, also <dir>/color/<name>.png (the layout's palette)
                              // and <dir>/overlay/<name>.jpg (the colours over the image, half opaque)
  // When set, this rank's first `picture_count` predictions are appended as pictures.
  std::vector<PredictionPicture>* pictures = nullptr;
  int64_t picture_count = 0;
  bool show_progress = false;  // rank 0 shows its images' progress (core/progress.h): `segrun eval`
  int64_t limit = -1;          // evaluate only the first `limit` records (-1 = all)
  bool multi_scale = false;    // also evaluate with eval.ms_scales + flip (the *_ms metrics)
  bool confusion = false;      // also the confusion matrix (EvalOutcome::confusion) of the
                               // predictions save_pred_dir would hold
};

EvalOutcome evaluate(models::SegmentorImpl& model, const data::StoreReader& store, const Config& config,
                     dist::Communicator& comm, const EvalRequest& request = {});

// The JSON record of an evaluation: metrics_to_json(single) (aAcc, mIoU, mAcc, per_class,
// per_class_acc, pixels, label_mAP...) and, with has_multi, aAcc_ms, mIoU_ms, mAcc_ms,
// per_class_ms (IoU in percent, null where undefined), ms_scales and ms_flip = true, and
// skipped_records when corrupt records were left out (data.on_corrupt = "skip").
// This is what metrics.jsonl's "val"/"eval" lines, result.json and `segrun eval --json` hold.
nlohmann::ordered_json eval_record_json(const EvalOutcome& outcome, const std::vector<std::string>& class_names);

struct CheckpointEvaluation {
  EvalOutcome outcome;
  std::vector<std::string> class_names;
  int64_t iteration = 0;  // the checkpoint's next iteration (= iterations trained)
};

// `segrun eval`: opens config.data.val_store (checked against data.layout), builds the model of
// `config`, loads `checkpoint` (its model signature must match) and evaluates on every rank.
CheckpointEvaluation evaluate_checkpoint(const Config& config, const dist::RankContext& context,
                                         const std::string& checkpoint, const EvalRequest& request);

// One view of the test image: a scale relative to the test scale, mirrored or not.
struct TestView {
  double scale = 1.0;
  bool flip = false;
  bool operator==(const TestView& o) const { return scale == o.scale && flip == o.flip; }
};

// The views of `scales` (in order), each followed by its mirror when `flip`.
std::vector<TestView> test_views(const std::vector<double>& scales, bool flip);

// Softmaxed class scores [1, K, height, width] of views of one scale of a normalized image
// [1, 3, h, w] (an image and its mirror), in order: the image resized once by the scale
// (round-half-up sizes, at least 1 pixel), mirrored where view.flip, inferred together
// (infer_logits: their crops share forward passes), mirrored back, resized to height x width,
// softmax over K. ModelError when the views' scales differ.
std::vector<torch::Tensor> same_scale_view_scores(models::SegmentorImpl& model, const torch::Tensor& image,
                                                  const std::vector<TestView>& views, int64_t height, int64_t width,
                                                  const EvalConfig& eval);

// Logits [1, K, h, w] of each normalized image [1, 3, h, w] (all of one size): the whole image
// (eval.mode = "whole") or mmseg's sliding windows (eval.crop every eval.stride, the last flush
// with the border, overlaps averaged). The crops of all the images go through the model
// eval.batch at a time (one forward pass of up to eval.batch crops); eval.batch = 1 is mmseg's one
// crop per pass. A model gives every crop of a batch the logits it gives the crop alone (eval mode),
// so eval.batch only changes the speed and memory, and float rounding. A crop smaller than the
// model's min_input_side() is padded with zeros at the bottom and right to that size (no
// mmseg equivalent: its CLIP backbones fail there) and the logits of the padding are cut off.
std::vector<torch::Tensor> infer_logits(models::SegmentorImpl& model, const std::vector<torch::Tensor>& images,
                                        const EvalConfig& eval);

// The views of an evaluation: `single` (eval.scales, each also mirrored when eval.flip), `multi`
// (eval.ms_scales, each also mirrored; empty unless multi_scale) and each of them once in
// `distinct` (single's first). ConfigError naming eval.scales / eval.ms_scales when empty.
struct ViewSet {
  std::vector<TestView> single, multi, distinct;
};
ViewSet eval_views(const EvalConfig& eval, bool multi_scale);

// The summed view scores of one normalized image [1, 3, h, w] (on the model's device) at the
// label size height x width: `single` over views.single, `multi` over views.multi (undefined
// when empty), each distinct view inferred once. The argmax over dim 1 is the prediction; this is
// what evaluate() scores and what `segrun predict` writes. A view and its mirror (neighbours in
// `distinct`) are inferred together (same_scale_view_scores). A failure of the model on the image
// is a ModelError that starts with `what` (the image file, or the store record).
struct ViewScores {
  torch::Tensor single, multi;  // [1, K, height, width]
};
// With `ms_image` defined (a normalized image of its own size, on the same device), the views of
// views.multi scale that image instead of `image` (eval.ms_base = "image").
ViewScores score_views(models::SegmentorImpl& model, const torch::Tensor& image, const ViewSet& views, int64_t height,
                       int64_t width, const EvalConfig& eval, const std::string& what,
                       const torch::Tensor& ms_image = {});
// The base image of the multi-scale views: undefined (they scale the test image, data.scale's:
// mmseg 0.x's MultiScaleFlipAug, DenseCLIP, CLIP-SP) unless multi_scale and eval.ms_base =
// "image": then the decoded image normalized at its own size, on `device` (mmseg 1.x's
// TestTimeAug, whose Resize(scale_factor = r) scales the loaded image: MTA-CLIP's tta_pipeline).
torch::Tensor multi_scale_base(const cv::Mat& original_bgr, const data::TestTransformOptions& options,
                               const EvalConfig& eval, bool multi_scale, const torch::Device& device);

// A label map [H, W] of any integer dtype and device (train ids, 255 = ignore) as an owning
// CV_8UC1 matrix on the host.
cv::Mat label_image(const torch::Tensor& label);

// Writes a prediction (CV_8UC1 train ids) as <dir>/<name>.png and, with `color`, the layout's
// palette as <dir>/color/<name>.png and an overlay on `image_bgr` (same size) as
// <dir>/overlay/<name>.jpg. The folders must exist; IoError naming a file that cannot be written.
void write_prediction(const std::string& dir, const std::string& name, const cv::Mat& prediction,
                      const cv::Mat& image_bgr, data::Layout layout, bool color);

}  // namespace segrun::engine
