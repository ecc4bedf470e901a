#include "dist/sync_batch_norm.h"

namespace segrun::dist {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Communicator pointers travel through the autograd context as integers.
int64_t pack_pointer(Communicator* comm) { return reinterpret_cast<int64_t>(comm); }
Communicator* unpack_pointer(int64_t p) { return reinterpret_cast<Communicator*>(p); }

void allreduce_if_any(Communicator* comm, torch::Tensor& t) {
  if (comm && comm->size() > 1) comm->allreduce(t);
}

// Statistics are accumulated in float64 from float32 values (a reduced-precision input, under
// autocast, is widened first: E[x^2] - E[x]^2 needs the bits). The global element count stays a
// device tensor, so a GPU forward never waits for the host.
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  // Returns the normalized output; updates running stats in place (no grad through them).
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor input, torch::Tensor weight, torch::Tensor bias,
                               torch::Tensor running_mean, torch::Tensor running_var, double eps, double momentum,
                               int64_t comm_ptr) {
    Communicator* comm = unpack_pointer(comm_ptr);
    const int64_t channels = input.size(1);
    const std::vector<int64_t> reduce_dims{0, 2, 3};
    torch::Tensor x = input.contiguous();
    torch::Tensor xf = x.scalar_type() == torch::kFloat64 ? x : x.to(torch::kFloat32);
    const auto f64 = x.options().dtype(torch::kFloat64);
    torch::Tensor stats =
        torch::cat({xf.sum(reduce_dims, false, torch::kFloat64), (xf * xf).sum(reduce_dims, false, torch::kFloat64),
                    torch::full({1}, static_cast<double>(x.numel() / std::max<int64_t>(channels, 1)), f64)});
    allreduce_if_any(comm, stats);
    torch::Tensor count = stats.slice(0, 2 * channels, 2 * channels + 1);  // [1], on the device
    if (!count.is_cuda()) TORCH_CHECK(count.item<double>() > 0, "SyncBatchNorm: the global batch is empty");
    torch::Tensor mean64 = stats.slice(0, 0, channels) / count;
    torch::Tensor var64 = (stats.slice(0, channels, 2 * channels) / count - mean64 * mean64).clamp_min(0);
    torch::Tensor mean = mean64.to(xf.scalar_type());
    torch::Tensor invstd = (var64 + eps).rsqrt().to(xf.scalar_type());
    {
      torch::NoGradGuard no_grad;
      torch::Tensor unbiased = torch::where(count > 1, count / (count - 1), torch::ones_like(count));
      running_mean.mul_(1 - momentum).add_(mean64.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum).add_((var64 * unbiased).to(running_var.scalar_type()), momentum);
    }
    auto shape = std::vector<int64_t>{1, channels, 1, 1};
    torch::Tensor xhat = (xf - mean.view(shape)) * invstd.view(shape);
    ctx->save_for_backward({xhat, invstd, weight, count});
    ctx->saved_data["comm"] = comm_ptr;
    return (xhat * weight.view(shape) + bias.view(shape)).to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor xhat = saved[0], invstd = saved[1], weight = saved[2], count = saved[3];
    Communicator* comm = unpack_pointer(ctx->saved_data["comm"].toInt());
    torch::Tensor dy = grad_outputs[0].contiguous().to(xhat.scalar_type());
    const int64_t channels = dy.size(1);
    const std::vector<int64_t> reduce_dims{0, 2, 3};
    torch::Tensor local_sum_dy = dy.sum(reduce_dims);
    torch::Tensor local_sum_dy_xhat = (dy * xhat).sum(reduce_dims);
    torch::Tensor sums = torch::cat({local_sum_dy, local_sum_dy_xhat}).to(torch::kFloat64);
    allreduce_if_any(comm, sums);
    auto shape = std::vector<int64_t>{1, channels, 1, 1};
    torch::Tensor mean_dy = (sums.slice(0, 0, channels) / count).to(dy.scalar_type()).view(shape);
    torch::Tensor mean_dy_xhat = (sums.slice(0, channels, 2 * channels) / count).to(dy.scalar_type()).view(shape);
    torch::Tensor grad_input = (dy - mean_dy - xhat * mean_dy_xhat) * (invstd * weight).view(shape);
    return {grad_input.to(grad_outputs[0].scalar_type()),
            local_sum_dy_xhat,
            local_sum_dy,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(int64_t channels, std::shared_ptr<Communicator> comm, double eps, double momentum)
    : comm_(std::move(comm)), eps_(eps), momentum_(momentum) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
  running_mean = register_buffer("running_mean", torch::zeros({channels}));
  running_var = register_buffer("running_var", torch::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}

void SyncBatchNormImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  weight.fill_(1);
  bias.zero_();
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

torch::Tensor SyncBatchNormImpl::forward(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() == 4, "SyncBatchNorm expects [N,C,H,W], got ", input.sizes());
  if (!is_training()) {
    return torch::batch_norm(input, weight, bias, running_mean, running_var, false, momentum_, eps_,
                             /*cudnn_enabled=*/true);
  }
  {
    torch::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
  }
  // A world of one: the same statistics and running-stat update as the all-reduced path, from
  // LibTorch's fused kernel (cuDNN on a GPU).
  if (!comm_ || comm_->size() == 1)
    return torch::batch_norm(input, weight, bias, running_mean, running_var, /*training=*/true, momentum_, eps_,
                             /*cudnn_enabled=*/true);
  return SyncBatchNormFunction::apply(input, weight, bias, running_mean, running_var, eps_, momentum_,
                                      pack_pointer(comm_.get()));
}

}  // namespace segrun::dist
