#pragma once
// Helpers shared by the engine tests.

#include "tests/scratch_dir.h"

namespace segrun::engine::testing {

using segrun::testing::ScratchDir;

}  // namespace segrun::engine::testing
