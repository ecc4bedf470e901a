#pragma once
// The kinds of thing a config chooses by name: segmentation heads (model.head), CLIP backbones
// (model.backbone), dataset layouts (data.layout) and communicator backends (dist.backend). Each
// is an enum plus the one list of its names; the schema (config.cpp) takes its valid values from
// these lists, and the modules that act on a kind switch over the enum (models/segmentor.cpp per
// head and backbone family, models/clip/clip_backbones.cpp per backbone, data/classes.cpp per
// layout, dist/communicator.cpp per backend), so a kind added here without its facts or builder
// there does not compile (-Wswitch, warnings are errors).
// Only what the config itself must know lives here (names; a backbone's family and patch size,
// which the crop checks need); the architecture facts are models/clip/clip_backbones.h's, the
// dataset facts data/classes.h's. Constant tables; thread-safe.

#include <string>
#include <utility>
#include <vector>

namespace segrun {

// The segmentation heads model.head names; models/segmentor.cpp builds one segmentor per kind.
enum class HeadKind { kFpn, kClipSp, kMask2Former, kMtaClip };
const std::vector<std::pair<std::string, HeadKind>>& head_kinds();  // name -> kind, in this order
// The kind of a head name; ConfigError naming model.head and the known names otherwise.
HeadKind head_kind(const std::string& name);

// The CLIP visual towers model.backbone names. A family is built by one module (ModifiedResNet:
// models/clip/clip_resnet.h, sized by model.width; ViT: models/clip/clip_vit.h, sized by model.vit).
enum class BackboneKind { kClipRn50, kClipRn101, kClipVitB16 };
enum class BackboneFamily { kResNet, kVit };
struct BackboneInfo {
  std::string name;  // model.backbone
  BackboneKind kind;
  BackboneFamily family;
  int patch_size;  // ViT: pixels per patch side (the crop's height must be a multiple); 0 for ResNets
};
const std::vector<BackboneInfo>& backbone_kinds();  // in this order
const BackboneInfo& backbone_info(BackboneKind kind);
// The backbone of a name, or nullptr.
const BackboneInfo* find_backbone(const std::string& name);
// The backbone of a name; ConfigError "model.backbone: unknown backbone '<name>' (valid: <names>)"
// otherwise.
const BackboneInfo& backbone_info(const std::string& name);
std::string backbone_names();  // "clip_rn50, clip_rn101, clip_vit_b16"

// The on-disk dataset layouts data.layout names (data::Layout; data/classes.h has their facts).
enum class DatasetLayout { kAde20k, kCityscapes };
const std::vector<std::pair<std::string, DatasetLayout>>& dataset_layouts();  // name -> layout, in this order
const std::string& dataset_layout_name(DatasetLayout layout);

// The collective backends dist.backend names (besides "auto"); dist/communicator.cpp opens one per
// kind. Every kind is named in every build; one that is not compiled in (nccl without
// SEGRUN_WITH_NCCL) is refused when a communicator is opened (dist::compiled_backends()).
enum class CommBackend { kMpi, kNccl };
const std::vector<std::pair<std::string, CommBackend>>& comm_backends();  // name -> kind, in this order

}  // namespace segrun
