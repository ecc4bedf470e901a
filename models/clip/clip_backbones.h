#pragma once
// What each CLIP backbone kind is made of: the architecture facts of the OpenAI model of that name
// (core/kinds.h names the kinds and gives their family and ViT patch size, which the config checks
// need). clip_resnet.cpp sizes a ModifiedResNet from these, clip_text.cpp pairs the text encoder,
// segmentor.cpp builds the tower of the kind's family. clip_backbone_facts() is one switch over
// BackboneKind, so a kind added to core/kinds.h does not compile until it has its facts here.
// Constant tables; thread-safe.

#include <cstdint>
#include <vector>

#include "core/kinds.h"

namespace segrun::models {

struct ClipBackboneFacts {
  // ResNet family: bottleneck blocks per stage (RN50 3, 4, 6, 3; RN101 3, 4, 23, 3); empty for a ViT.
  std::vector<int64_t> resnet_layers;
  // ResNet family: the attention pooling's output width E = embed_per_width * model.width (OpenAI:
  // RN50 1024 = 16 x 64, RN101 512 = 8 x 64, scaled with the width); 0 for a ViT (model.vit.embed_dim).
  int64_t embed_per_width = 0;
  // Projection width of the text encoder released with the tower (its embedding width at full size).
  int64_t text_embed_dim = 0;
};
const ClipBackboneFacts& clip_backbone_facts(BackboneKind kind);

}  // namespace segrun::models
