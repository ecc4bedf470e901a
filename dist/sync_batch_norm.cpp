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

class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  // Returns the normalized output; updates running stats in place (no grad through them).
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor input, torch::Tensor weight,
                               torch::Tensor bias, torch::Tensor running_mean,
                               torch::Tensor running_var, double eps, double momentum,
                               int64_t comm_ptr) {
    Communicator* comm = unpack_pointer(comm_ptr);
    const int64_t channels = input.size(1);
    const std::vector<int64_t> reduce_dims{0, 2, 3};
    torch::Tensor x = input.contiguous();
    torch::Tensor stats = torch::empty({2 * channels + 1}, torch::kFloat64);
    stats.slice(0, 0, channels).copy_(x.sum(reduce_dims, false, torch::kFloat64));
    stats.slice(0, channels, 2 * channels).copy_((x * x).sum(reduce_dims, false, torch::kFloat64));
    stats[2 * channels] = static_cast<double>(x.numel() / std::max<int64_t>(channels, 1));
    allreduce_if_any(comm, stats);
    const double count = stats[2 * channels].item<double>();
    TORCH_CHECK(count > 0, "SyncBatchNorm: the global batch is empty");
    torch::Tensor mean64 = stats.slice(0, 0, channels) / count;
    torch::Tensor var64 = (stats.slice(0, channels, 2 * channels) / count - mean64 * mean64).clamp_min(0);
    torch::Tensor mean = mean64.to(x.scalar_type());
    torch::Tensor invstd = (var64 + eps).rsqrt().to(x.scalar_type());
    {
      torch::NoGradGuard no_grad;
      const double unbiased = count > 1 ? count / (count - 1) : 1.0;
      running_mean.mul_(1 - momentum).add_(mean64.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum).add_((var64 * unbiased).to(running_var.scalar_type()), momentum);
    }
    auto shape = std::vector<int64_t>{1, channels, 1, 1};
    torch::Tensor xhat = (x - mean.view(shape)) * invstd.view(shape);
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["comm"] = comm_ptr;
    ctx->saved_data["count"] = count;
    return xhat * weight.view(shape) + bias.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor xhat = saved[0], invstd = saved[1], weight = saved[2];
    Communicator* comm = unpack_pointer(ctx->saved_data["comm"].toInt());
    const double count = ctx->saved_data["count"].toDouble();
    torch::Tensor dy = grad_outputs[0].contiguous();
    const int64_t channels = dy.size(1);
    const std::vector<int64_t> reduce_dims{0, 2, 3};
    torch::Tensor local_sum_dy = dy.sum(reduce_dims);
    torch::Tensor local_sum_dy_xhat = (dy * xhat).sum(reduce_dims);
    torch::Tensor sums = torch::cat({local_sum_dy, local_sum_dy_xhat}).to(torch::kFloat64);
    allreduce_if_any(comm, sums);
    auto shape = std::vector<int64_t>{1, channels, 1, 1};
    torch::Tensor mean_dy = (sums.slice(0, 0, channels) / count).to(dy.scalar_type()).view(shape);
    torch::Tensor mean_dy_xhat =
        (sums.slice(0, channels, 2 * channels) / count).to(dy.scalar_type()).view(shape);
    torch::Tensor grad_input =
        (dy - mean_dy - xhat * mean_dy_xhat) * (invstd * weight).view(shape);
    return {grad_input, local_sum_dy_xhat, local_sum_dy, torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(int64_t channels, std::shared_ptr<Communicator> comm,
                                     double eps, double momentum)
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
                             /*cudnn_enabled=*/false);
  }
  {
    torch::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
  }
  return SyncBatchNormFunction::apply(input, weight, bias, running_mean, running_var, eps_,
                                      momentum_, pack_pointer(comm_.get()));
}

}  // namespace segrun::dist
