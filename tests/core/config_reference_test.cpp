// The config key reference: docs/config.md is what `segrun config --keys --format md` prints (a
// golden file: SEGRUN_UPDATE_GOLDEN=1 rewrites it; review the diff!); the text table is aligned and
// grouped by TOML table; a prefix selects keys, and one that selects none is an error naming the
// nearest table or key.
#include "core/config_reference.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace segrun {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(ConfigReference, DocsConfigMdIsWhatTheProgramPrints) {
  const fs::path path = fs::path(SEGRUN_TEST_SOURCE_DIR) / "docs" / "config.md";
  const std::string page = config_reference_page();
  if (std::getenv("SEGRUN_UPDATE_GOLDEN")) std::ofstream(path, std::ios::binary) << page;
  EXPECT_EQ(page, slurp(path)) << path << " differs from `segrun config --keys --format md`; "
                               << "SEGRUN_UPDATE_GOLDEN=1 build/tests/core/core_test rewrites it";
}

TEST(ConfigReference, EveryKeyIsARowOfItsTablesSection) {
  const std::string page = config_reference_page();
  for (const KeyInfo& k : config_key_infos()) EXPECT_THAT(page, HasSubstr("| `" + k.key + "` | " + k.type + " | "));
  EXPECT_THAT(page, HasSubstr("## `[model.clip_sp.batch_drop]`\n"));
  EXPECT_THAT(page, HasSubstr("| `data.layout` | string | `'ade20k'` | `ade20k`, `cityscapes` | "));
  EXPECT_THAT(page, HasSubstr("| `data.batch_per_rank` | int | `4` | [1, 1024] | "));
  EXPECT_THAT(page, HasSubstr("| `train.grad_clip` | float | `0.0` | [0, inf) | "));
  EXPECT_THAT(page, HasSubstr("| `train.lr` | float | `1e-04` | (0, 10] | "));
  EXPECT_THAT(page, HasSubstr("| `model.mta_clip.temperature` | float | `1.0` | (1e-04, 100] | "));
  // One section per table, also where the schema lists a subtable between a table's keys.
  EXPECT_EQ(page.find("## `[model.clip_sp]`"), page.rfind("## `[model.clip_sp]`"));
  EXPECT_LT(page.find("`model.clip_sp.lambda_aux`"), page.find("## `[model.clip_sp.batch_drop]`"));
}

TEST(ConfigReference, TheTextTableIsAlignedAndGroupedByTable) {
  const std::vector<KeyInfo> keys = keys_with_prefix("model.mta");
  const auto infos = config_key_infos();
  const auto in_table = static_cast<size_t>(std::count_if(
      infos.begin(), infos.end(), [](const KeyInfo& k) { return k.key.rfind("model.mta_clip.", 0) == 0; }));
  ASSERT_GE(in_table, 2u);
  ASSERT_EQ(keys.size(), in_table);
  for (const KeyInfo& k : keys) EXPECT_EQ(k.key.rfind("model.mta_clip.", 0), 0u) << k.key;
  const std::vector<std::string> lines = lines_of(format_key_reference(keys, ReferenceFormat::kText));
  ASSERT_EQ(lines.size(), in_table + 2);  // header, [model.mta_clip], its keys
  EXPECT_EQ(lines[1], "[model.mta_clip]");
  const size_t type_column = lines[0].find("type");
  const size_t meaning_column = lines[0].find("meaning");
  for (size_t i = 2; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].rfind("  model.mta_clip.", 0), 0u) << lines[i];
    for (const size_t column : {type_column, meaning_column}) {  // padding ends where the column starts
      EXPECT_EQ(lines[i][column - 1], ' ') << lines[i];
      EXPECT_NE(lines[i][column], ' ') << lines[i];
    }
  }
  EXPECT_THAT(lines[4], HasSubstr("mixneg | separateneg"));
  const std::string all = format_key_reference(keys_with_prefix(""), ReferenceFormat::kText);
  EXPECT_THAT(all, HasSubstr("\ntop level\n  name "));
  EXPECT_THAT(all, HasSubstr("\n[data]\n  data.layout "));
  EXPECT_THAT(all, HasSubstr("\n[cluster.slurm]\n"));
}

TEST(ConfigReference, APrefixThatSelectsNothingIsAnError) {
  EXPECT_EQ(keys_with_prefix("train.lr").size(), 1u);
  try {
    keys_with_prefix("modle.vit");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "config --keys: no key starts with 'modle.vit' (did you mean 'model.vit'?)");
  }
  try {
    keys_with_prefix("zzzzzzzz");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no key starts with 'zzzzzzzz' (the tables: segrun config --keys)"));
  }
}

}  // namespace
}  // namespace segrun
