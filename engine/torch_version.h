#pragma once
// SEGRUN_TORCH_AT_LEAST(major, minor): whether the LibTorch compiled against is that version or
// newer, for the few calls whose API differs between Debian's LibTorch 1.13 (CI) and the 2.x of a
// pip-installed torch (GPU machines; docs/gpu.md). Each use says what changed in that version.

#include <torch/version.h>

#define SEGRUN_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))
