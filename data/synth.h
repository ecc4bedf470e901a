#pragma once
// Synthetic datasets written in the REAL on-disk layouts, so the packer and every test exercise the
// same code path as real ADE20K / Cityscapes folders:
//   ADE20K      <out>/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_%08d.jpg
//               <out>/ADEChallengeData2016/annotations/{training,validation}/ADE_..._%08d.png
//               (uint8 PNG: 0 = other, 1..150 = classes)
//   Cityscapes  <out>/leftImg8bit/{train,val}/<city>/<city>_%06d_%06d_leftImg8bit.png
//               <out>/gtFine/{train,val}/<city>/<city>_%06d_%06d_gtFine_labelIds.png (raw labelIds)
// Each image is a few regions (a perturbed Voronoi partition plus an ellipse) whose appearance is
// a function of the class (base color + stripes of class-dependent frequency and orientation +
// noise), so a small CNN can learn it. Deterministic from `seed` (SampleRng, RngPurpose::kSynth).
// Errors: an unwritable output directory or file -> DataError naming it.

#include <cstdint>
#include <string>
#include <vector>

#include "data/classes.h"

namespace segrun::data {

struct SynthOptions {
  Layout layout = Layout::kAde20k;
  std::string out;
  int train = 64;
  int val = 16;
  int height = 128;
  int width = 128;
  uint64_t seed = 0;
  int classes_used = 0;  // 0 = LayoutInfo::synth_classes: 12 for ADE20K, 10 for Cityscapes
};

// Raw on-disk label values the generator draws regions from (ADE20K: ids spread over 1..150;
// Cityscapes: labelIds of trainIds spread over 0..18). "Other" pixels (ADE20K 0, Cityscapes
// labelIds 0 and 4) come on top of these.
std::vector<int> synth_raw_classes(const SynthOptions& options);

void synthesize(const SynthOptions& options);

}  // namespace segrun::data
