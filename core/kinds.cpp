// The kinds a config names and their name lists: see kinds.h.
#include "core/kinds.h"

#include "core/error.h"

namespace segrun {

const std::vector<std::pair<std::string, HeadKind>>& head_kinds() {
  static const std::vector<std::pair<std::string, HeadKind>> kinds{{"fpn", HeadKind::kFpn},
                                                                   {"clip_sp", HeadKind::kClipSp},
                                                                   {"mask2former", HeadKind::kMask2Former},
                                                                   {"mta_clip", HeadKind::kMtaClip}};
  return kinds;
}

HeadKind head_kind(const std::string& name) {
  std::string known;
  for (const auto& [head, kind] : head_kinds()) {
    if (head == name) return kind;
    known += (known.empty() ? "" : ", ") + head;
  }
  throw ConfigError("model.head: unknown head '" + name + "' (known: " + known + ")");
}

const std::vector<BackboneInfo>& backbone_kinds() {
  static const std::vector<BackboneInfo> kinds{
      {"clip_rn50", BackboneKind::kClipRn50, BackboneFamily::kResNet, 0},
      {"clip_rn101", BackboneKind::kClipRn101, BackboneFamily::kResNet, 0},
      {"clip_vit_b16", BackboneKind::kClipVitB16, BackboneFamily::kVit, 16},
  };
  return kinds;
}

const BackboneInfo& backbone_info(BackboneKind kind) {
  for (const auto& info : backbone_kinds())
    if (info.kind == kind) return info;
  throw ConfigError("model.backbone: backbone kind " + std::to_string(static_cast<int>(kind)) + " has no name");
}

const BackboneInfo* find_backbone(const std::string& name) {
  for (const auto& info : backbone_kinds())
    if (info.name == name) return &info;
  return nullptr;
}

const BackboneInfo& backbone_info(const std::string& name) {
  if (const BackboneInfo* info = find_backbone(name)) return *info;
  throw ConfigError("model.backbone: unknown backbone '" + name + "' (valid: " + backbone_names() + ")");
}

std::string backbone_names() {
  std::string names;
  for (const auto& info : backbone_kinds()) names += (names.empty() ? "" : ", ") + info.name;
  return names;
}

const std::vector<std::pair<std::string, DatasetLayout>>& dataset_layouts() {
  static const std::vector<std::pair<std::string, DatasetLayout>> layouts{{"ade20k", DatasetLayout::kAde20k},
                                                                          {"cityscapes", DatasetLayout::kCityscapes}};
  return layouts;
}

const std::string& dataset_layout_name(DatasetLayout layout) {
  for (const auto& [name, kind] : dataset_layouts())
    if (kind == layout) return name;
  throw ConfigError("data.layout: layout kind " + std::to_string(static_cast<int>(layout)) + " has no name");
}

const std::vector<std::pair<std::string, CommBackend>>& comm_backends() {
  static const std::vector<std::pair<std::string, CommBackend>> backends{{"mpi", CommBackend::kMpi},
                                                                         {"nccl", CommBackend::kNccl}};
  return backends;
}

}  // namespace segrun
