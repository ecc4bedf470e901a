#pragma once
// Mask2Former's pixel decoder (MSDeformAttnPixelDecoder, Cheng et al. 2022) on the backbone's
// stages c1..c4 (strides 4, 8, 16, 32):
//  - c2..c4 go through a 1x1 conv + GroupNorm input projection each, get a sine positional
//    encoding plus a learned per-level embedding, and pass `encoder_layers` post-norm deformable
//    attention encoder layers (multi-scale deformable self-attention, then a ReLU FFN);
//  - the encoder output, split back into levels, gives the multi-scale features at 1/32, 1/16,
//    1/8; an FPN step adds c1's lateral (1x1 conv + GN) to the bilinearly upsampled 1/8 map and
//    runs a 3x3 conv + GN + ReLU; a 1x1 conv turns that into the 1/4 mask features.
// Deformable attention samples with torch grid_sample (bilinear, zero padding,
// align_corners = false), so it runs on any device; ms_deform_attn_sample is the reference-
// compatible core (same semantics as Deformable DETR's ms_deform_attn_core_pytorch).
// Parameter names follow Mask2Former's where the module tree allows (input_proj.0.0.weight,
// level_embed, encoder.0.self_attn.sampling_offsets.weight, adapter_1.0.weight, layer_1.0.weight,
// mask_features.weight). Torch modules: not thread-safe.

#include <torch/torch.h>

#include <utility>
#include <vector>

namespace segrun::models {

// value [B, S, M, D] (S = sum of H_l * W_l, levels in `shapes` order, row-major), sampling
// locations [B, Lq, M, L, P, 2] as (x, y) in [0, 1] of each level, attention weights
// [B, Lq, M, L, P] -> [B, Lq, M * D]. Locations outside [0, 1] sample zeros.
torch::Tensor ms_deform_attn_sample(const torch::Tensor& value, const std::vector<std::pair<int64_t, int64_t>>& shapes,
                                    const torch::Tensor& locations, const torch::Tensor& weights);

// DETR's PositionEmbeddingSine(num_pos_feats, temperature 10000, normalize, scale 2 pi) for an
// unpadded [B, *, H, W] map -> [B, 2 * num_pos_feats, H, W] (y features first, then x).
torch::Tensor sine_position_embedding(int64_t batch, int64_t height, int64_t width, int64_t num_pos_feats,
                                      const torch::TensorOptions& options);

// Reference points of every location of every level: cell centres (x + 0.5) / W, (y + 0.5) / H
// -> [S, 2] as (x, y), levels concatenated in `shapes` order.
torch::Tensor deform_reference_points(const std::vector<std::pair<int64_t, int64_t>>& shapes,
                                      const torch::TensorOptions& options);

struct MSDeformAttnOptions {
  int64_t dim = 256;
  int64_t levels = 3;
  int64_t heads = 8;
  int64_t points = 4;
};

// Multi-scale deformable attention (Zhu et al. 2021) with Deformable DETR's initialization:
// sampling offsets start on a per-head direction grid, attention weights at zero (uniform).
class MSDeformAttnImpl : public torch::nn::Module {
 public:
  explicit MSDeformAttnImpl(const MSDeformAttnOptions& options);
  // query [B, Lq, C], reference [B, Lq, L, 2] in [0, 1], input [B, S, C] -> [B, Lq, C].
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& reference, const torch::Tensor& input,
                        const std::vector<std::pair<int64_t, int64_t>>& shapes);
  void reset_parameters();

 private:
  MSDeformAttnOptions options_;
  torch::nn::Linear sampling_offsets_{nullptr}, attention_weights_{nullptr}, value_proj_{nullptr},
      output_proj_{nullptr};
};
TORCH_MODULE(MSDeformAttn);

// Post-norm encoder layer: x = LN(x + MSDA(x + pos)); x = LN(x + FFN(x)) (ReLU, no dropout).
class MSDeformEncoderLayerImpl : public torch::nn::Module {
 public:
  MSDeformEncoderLayerImpl(const MSDeformAttnOptions& attention, int64_t ffn_dim);
  torch::Tensor forward(const torch::Tensor& src, const torch::Tensor& pos, const torch::Tensor& reference,
                        const std::vector<std::pair<int64_t, int64_t>>& shapes);
  MSDeformAttn& self_attn() { return self_attn_; }

 private:
  MSDeformAttn self_attn_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Linear linear1_{nullptr}, linear2_{nullptr};
};
TORCH_MODULE(MSDeformEncoderLayer);

struct PixelDecoderOptions {
  std::vector<int64_t> in_channels;  // c1..c4 channels (fine to coarse)
  int64_t conv_dim = 256;            // transformer / FPN width
  int64_t mask_dim = 256;            // mask feature channels
  int64_t encoder_layers = 6;
  int64_t heads = 8;
  int64_t points = 4;
  int64_t ffn_dim = 1024;
  int64_t groups = 32;  // GroupNorm groups (must divide conv_dim)
};

struct PixelDecoderOutput {
  torch::Tensor mask_features;             // [B, mask_dim, H/4, W/4]
  std::vector<torch::Tensor> multi_scale;  // [B, conv_dim, H/32|H/16|H/8, ...], coarse first
};

class MSDeformPixelDecoderImpl : public torch::nn::Module {
 public:
  explicit MSDeformPixelDecoderImpl(const PixelDecoderOptions& options);
  PixelDecoderOutput forward(const std::vector<torch::Tensor>& stages);

 private:
  PixelDecoderOptions options_;
  torch::nn::ModuleList input_proj_{nullptr};  // coarse first: c4, c3, c2
  torch::Tensor level_embed_;
  torch::nn::ModuleList encoder_{nullptr};
  torch::nn::Sequential adapter_{nullptr}, layer_{nullptr};  // c1 lateral, FPN output conv
  torch::nn::Conv2d mask_features_{nullptr};
};
TORCH_MODULE(MSDeformPixelDecoder);

}  // namespace segrun::models
