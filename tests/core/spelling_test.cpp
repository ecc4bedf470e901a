// core/spelling.h: Levenshtein distances checked against hand-counted edits, and the suggestion
// rule (close enough to be a misspelling, else none).
#include "core/spelling.h"

#include <gtest/gtest.h>

namespace segrun {
namespace {

TEST(Spelling, EditDistanceCountsInsertionsDeletionsAndSubstitutions) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("train", "train"), 0u);
  EXPECT_EQ(edit_distance("", "eval"), 4u);
  EXPECT_EQ(edit_distance("trian", "train"), 2u);     // a transposition is two substitutions
  EXPECT_EQ(edit_distance("pak", "pack"), 1u);        // one insertion
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);  // k->s, e->i, +g
  EXPECT_EQ(edit_distance("sitting", "kitten"), 3u);
}

TEST(Spelling, LikelyMeantSuggestsOnlyPlausibleMisspellings) {
  const std::vector<std::string> commands{"data", "train", "eval", "metrics", "config", "launch"};
  EXPECT_EQ(likely_meant("trian", commands), "train");
  EXPECT_EQ(likely_meant("evl", commands), "eval");
  EXPECT_EQ(likely_meant("metrix", commands), "metrics");
  EXPECT_EQ(likely_meant("lunch", commands), "launch");
  EXPECT_EQ(likely_meant("go", commands), "");  // 3+ edits from everything
  EXPECT_EQ(likely_meant("configuration", commands), "");
  EXPECT_EQ(likely_meant("train", {}), "");
  EXPECT_EQ(likely_meant("tst", {"test", "tast"}), "test");  // the first of equals
}

}  // namespace
}  // namespace segrun
