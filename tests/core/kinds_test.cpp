// The name lists of core/kinds.h: every kind has one name and round-trips; unknown names give the
// one-line errors the config and the models report.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "core/config.h"
#include "core/error.h"
#include "core/kinds.h"

namespace segrun {
namespace {

TEST(Kinds, BackbonesRoundTripAndKnowTheirFamily) {
  std::set<std::string> names;
  for (const BackboneInfo& info : backbone_kinds()) {
    EXPECT_TRUE(names.insert(info.name).second) << info.name << " listed twice";
    EXPECT_EQ(&backbone_info(info.name), &info);
    EXPECT_EQ(&backbone_info(info.kind), &info);
    EXPECT_EQ(find_backbone(info.name), &info);
    switch (info.family) {
      case BackboneFamily::kResNet: EXPECT_EQ(info.patch_size, 0) << info.name; break;
      case BackboneFamily::kVit: EXPECT_GT(info.patch_size, 0) << info.name; break;
    }
  }
  EXPECT_EQ(backbone_names(), "clip_rn50, clip_rn101, clip_vit_b16");
  EXPECT_EQ(backbone_info("clip_vit_b16").family, BackboneFamily::kVit);
  EXPECT_EQ(backbone_info("clip_vit_b16").patch_size, 16);
  EXPECT_EQ(backbone_info("clip_rn101").family, BackboneFamily::kResNet);
}

TEST(Kinds, UnknownBackboneIsAConfigErrorListingTheNames) {
  EXPECT_EQ(find_backbone("clip_vit_l14"), nullptr);
  try {
    backbone_info("clip_vit_l14");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "model.backbone: unknown backbone 'clip_vit_l14' (valid: clip_rn50, clip_rn101, clip_vit_b16)");
  }
}

TEST(Kinds, HeadsAndLayoutsRoundTrip) {
  for (const auto& [name, kind] : head_kinds()) EXPECT_EQ(head_kind(name), kind);
  EXPECT_THROW(head_kind("segformer"), ConfigError);
  ASSERT_EQ(dataset_layouts().size(), 2u);
  for (const auto& [name, layout] : dataset_layouts()) EXPECT_EQ(dataset_layout_name(layout), name);
  EXPECT_EQ(dataset_layout_name(DatasetLayout::kAde20k), "ade20k");
  EXPECT_EQ(dataset_layout_name(DatasetLayout::kCityscapes), "cityscapes");
}

// dist.backend takes its names from comm_backends() (plus auto): each is a valid config value.
TEST(Kinds, CommBackendsAreTheSchemasChoices) {
  ASSERT_EQ(comm_backends().size(), 2u);
  EXPECT_EQ(comm_backends()[0].first, "mpi");
  EXPECT_EQ(comm_backends()[1].first, "nccl");
  for (const auto& [name, kind] : comm_backends())
    EXPECT_EQ(parse_config("[dist]\nbackend = \"" + name + "\"\n", "c.toml").dist.backend, name);
  EXPECT_EQ(parse_config("[dist]\nbackend = \"auto\"\n", "c.toml").dist.backend, "auto");
  EXPECT_THROW(parse_config("[dist]\nbackend = \"gloo\"\n", "c.toml"), ConfigError);
}

}  // namespace
}  // namespace segrun
