// Architecture facts per CLIP backbone kind: see clip_backbones.h.
#include "models/clip/clip_backbones.h"

#include "core/error.h"

namespace segrun::models {

const ClipBackboneFacts& clip_backbone_facts(BackboneKind kind) {
  static const ClipBackboneFacts kRn50{{3, 4, 6, 3}, 16, 1024};
  static const ClipBackboneFacts kRn101{{3, 4, 23, 3}, 8, 512};
  static const ClipBackboneFacts kVitB16{{}, 0, 512};
  switch (kind) {
    case BackboneKind::kClipRn50: return kRn50;
    case BackboneKind::kClipRn101: return kRn101;
    case BackboneKind::kClipVitB16: return kVitB16;
  }
  throw ModelError("model.backbone: no facts for backbone kind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace segrun::models
