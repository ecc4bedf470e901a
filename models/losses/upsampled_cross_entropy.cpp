// Fused bilinear upsampling + cross-entropy: see upsampled_cross_entropy.h.
#include "models/losses/upsampled_cross_entropy.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/error.h"

namespace segrun::models {
namespace {

// Source indices and weights of one axis, PyTorch's area_pixel_compute_source_index with
// align_corners = false and the scale in/out: src = max(scale * (d + 0.5) - 0.5, 0).
struct BilinearAxis {
  std::vector<int64_t> low, high;
  std::vector<float> low_weight, high_weight;
};

BilinearAxis bilinear_axis(int64_t in, int64_t out) {
  BilinearAxis axis;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t d = 0; d < out; ++d) {
    const float src = std::max(scale * (static_cast<float>(d) + 0.5f) - 0.5f, 0.0f);
    const auto low = std::min(static_cast<int64_t>(src), in - 1);
    const float lambda = std::min(std::max(src - static_cast<float>(low), 0.0f), 1.0f);
    axis.low.push_back(low);
    axis.high.push_back(low + (low < in - 1 ? 1 : 0));
    axis.high_weight.push_back(lambda);
    axis.low_weight.push_back(1.0f - lambda);
  }
  return axis;
}

struct LossAndGrad {
  torch::Tensor loss;  // scalar
  torch::Tensor grad;  // d loss / d logits [B, K, h, w], undefined when not wanted
};

LossAndGrad fused_loss(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index, bool want_grad) {
  const int64_t batch = logits.size(0), classes = logits.size(1), h = logits.size(2), w = logits.size(3);
  const int64_t out_h = labels.size(1), out_w = labels.size(2);
  const torch::Tensor source = logits.permute({0, 2, 3, 1}).contiguous();  // [B, h, w, K]
  const torch::Tensor targets = labels.contiguous();
  torch::Tensor grad = want_grad ? torch::zeros_like(source) : torch::Tensor();
  const BilinearAxis rows = bilinear_axis(h, out_h), cols = bilinear_axis(w, out_w);
  const double inv_pixels = 1.0 / static_cast<double>(batch * out_h * out_w);
  std::vector<double> image_loss(static_cast<size_t>(batch), 0.0);
  std::atomic<int64_t> bad_label{-1};
  std::atomic<bool> has_bad{false};

  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    torch::Tensor z = torch::empty({out_w, classes}, source.options());
    float* zp = z.data_ptr<float>();
    for (int64_t b = begin; b < end; ++b) {
      const float* src = source.data_ptr<float>() + b * h * w * classes;
      float* g = want_grad ? grad.data_ptr<float>() + b * h * w * classes : nullptr;
      const int64_t* label_row = targets.data_ptr<int64_t>() + b * out_h * out_w;
      double sum = 0.0;
      for (int64_t y = 0; y < out_h; ++y, label_row += out_w) {
        const float* top = src + rows.low[static_cast<size_t>(y)] * w * classes;
        const float* bottom = src + rows.high[static_cast<size_t>(y)] * w * classes;
        const float wy0 = rows.low_weight[static_cast<size_t>(y)], wy1 = rows.high_weight[static_cast<size_t>(y)];
        for (int64_t x = 0; x < out_w; ++x) {
          const int64_t x0 = cols.low[static_cast<size_t>(x)] * classes,
                        x1 = cols.high[static_cast<size_t>(x)] * classes;
          const float wx0 = cols.low_weight[static_cast<size_t>(x)], wx1 = cols.high_weight[static_cast<size_t>(x)];
          const float *a = top + x0, *bb = top + x1, *c = bottom + x0, *d = bottom + x1;
          float* zr = zp + x * classes;
          // The order of upsample_bilinear2d: h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d).
          for (int64_t k = 0; k < classes; ++k)
            zr[k] = wy0 * (wx0 * a[k] + wx1 * bb[k]) + wy1 * (wx0 * c[k] + wx1 * d[k]);
        }
        const torch::Tensor lse = torch::logsumexp(z, 1);  // vectorized over each K-row
        const float* lse_p = lse.data_ptr<float>();
        for (int64_t x = 0; x < out_w; ++x) {
          const int64_t t = label_row[x];
          if (t == ignore_index) continue;
          if (t < 0 || t >= classes) {
            has_bad = true;
            bad_label = t;
            continue;
          }
          sum += static_cast<double>(lse_p[x]) - static_cast<double>(zp[x * classes + t]);
        }
        if (!want_grad) continue;
        z.sub_(lse.unsqueeze(1)).exp_();  // softmax rows
        const auto scale = static_cast<float>(inv_pixels);
        for (int64_t x = 0; x < out_w; ++x) {
          const int64_t t = label_row[x];
          if (t == ignore_index || t < 0 || t >= classes) continue;
          float* p = zp + x * classes;
          p[t] -= 1.0f;
          const int64_t x0 = cols.low[static_cast<size_t>(x)] * classes,
                        x1 = cols.high[static_cast<size_t>(x)] * classes;
          const float wx0 = cols.low_weight[static_cast<size_t>(x)], wx1 = cols.high_weight[static_cast<size_t>(x)];
          float* ga = g + rows.low[static_cast<size_t>(y)] * w * classes;
          float* gc = g + rows.high[static_cast<size_t>(y)] * w * classes;
          const float w00 = scale * wy0 * wx0, w01 = scale * wy0 * wx1, w10 = scale * wy1 * wx0,
                      w11 = scale * wy1 * wx1;
          for (int64_t k = 0; k < classes; ++k) {
            const float v = p[k];
            ga[x0 + k] += w00 * v;
            ga[x1 + k] += w01 * v;
            gc[x0 + k] += w10 * v;
            gc[x1 + k] += w11 * v;
          }
        }
      }
      image_loss[static_cast<size_t>(b)] = sum;
    }
  });
  SEGRUN_CHECK(!has_bad.load(), DataError,
               "cross-entropy: label values must be in [0, " << classes << ") or " << ignore_index << "; found "
                                                             << bad_label.load());
  double total = 0.0;
  for (double v : image_loss) total += v;
  LossAndGrad out;
  out.loss = torch::tensor(static_cast<float>(total * inv_pixels), logits.options());
  if (want_grad) out.grad = grad.permute({0, 3, 1, 2}).contiguous();
  return out;
}

class UpsampledCrossEntropyFunction : public torch::autograd::Function<UpsampledCrossEntropyFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& labels, int64_t ignore_index) {
    LossAndGrad result = fused_loss(logits, labels, ignore_index, /*want_grad=*/true);
    ctx->save_for_backward({result.grad});
    return result.loss;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_outputs) {
    const torch::Tensor grad = ctx->get_saved_variables()[0];
    return {grad * grad_outputs[0], torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor upsampled_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index) {
  SEGRUN_CHECK(logits.dim() == 4 && logits.scalar_type() == torch::kFloat32 && logits.device().is_cpu(), ModelError,
               "fused cross-entropy: logits must be CPU float32 [B, K, h, w], got " << logits.sizes() << " "
                                                                                    << logits.scalar_type());
  SEGRUN_CHECK(
      labels.dim() == 3 && labels.size(0) == logits.size(0) && labels.scalar_type() == torch::kLong, DataError,
      "cross-entropy: labels must be int64 [B, H, W] with B = " << logits.size(0) << ", got " << labels.sizes());
  if (torch::GradMode::is_enabled() && logits.requires_grad())
    return UpsampledCrossEntropyFunction::apply(logits, labels, ignore_index);
  return fused_loss(logits, labels, ignore_index, /*want_grad=*/false).loss;
}

}  // namespace segrun::models
