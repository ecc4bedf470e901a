// segrun::format against the outputs fmt gives for the same patterns (the strings below are what
// fmt 9 prints; checked by hand with printf for the numeric specs).
#include "core/format.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace segrun {
namespace {

TEST(Format, PlainFieldsPrintLikeFmt) {
  EXPECT_EQ(format("iter {}/{} of {}", 12, int64_t{80000}, std::string("run")), "iter 12/80000 of run");
  EXPECT_EQ(format("{} {} {} {}", 0.1, 1.0, 1e-5, 2.5f), "0.1 1 1e-05 2.5");
  EXPECT_EQ(format("{} {}", true, false), "true false");
  EXPECT_EQ(format("{} {}", uint64_t{18446744073709551615ull}, std::numeric_limits<int64_t>::min()),
            "18446744073709551615 -9223372036854775808");
  EXPECT_EQ(format("{}{}", 'x', "y"), "xy");
  const char* null_text = nullptr;
  EXPECT_EQ(format("[{}]", null_text), "[(null)]");
}

TEST(Format, SpecsWidthsAndPrecision) {
  EXPECT_EQ(format("{:.4f}", 0.123456), "0.1235");
  EXPECT_EQ(format("{:.2f}|{:.1f}", 89.994, 3.0), "89.99|3.0");
  EXPECT_EQ(format("{:.3e}", 0.000123456), "1.235e-04");
  EXPECT_EQ(format("{:g} {:g}", 0.5, 1.75), "0.5 1.75");
  EXPECT_EQ(format("{:>7.2f}|{:<22}|{:>7}", 42.126, "name", "mIoU"), "  42.13|name                  |   mIoU");
  EXPECT_EQ(format("{:^7}|{:*>5}|{:5}", "ab", 42, 7), "  ab   |***42|    7");
  EXPECT_EQ(format("{:.2f}", 3), "3.00");  // an integer with a precision prints as a float
}

TEST(Format, EscapesAndMismatchesNeverThrow) {
  EXPECT_EQ(format("{{}} {}", 1), "{} 1");
  EXPECT_EQ(format("{} and {}", 1), "1 and {}");  // a field without an argument stays
  EXPECT_EQ(format("{}", 1, 2), "1");             // surplus arguments are ignored
  EXPECT_EQ(format("{:q}", 1), "{:q}");           // an unknown spec stays verbatim
  EXPECT_EQ(format("open {", 1), "open {");
  EXPECT_EQ(format("no fields"), "no fields");
}

struct Streamable {
  int value;
};
std::ostream& operator<<(std::ostream& os, const Streamable& s) { return os << "S(" << s.value << ")"; }

TEST(Format, StreamableArgumentsAndCopies) {
  EXPECT_EQ(format("{:>6}", Streamable{3}), "  S(3)");
  FormatArg original{Streamable{5}};
  FormatArg copy = original;
  std::string out;
  ASSERT_TRUE(copy.append_to(out, ""));
  EXPECT_EQ(out, "S(5)");
}

TEST(ParseNumber, TheWholeTextAsAFiniteNumber) {
  double v = 0;
  EXPECT_TRUE(parse_number("42.5", v));
  EXPECT_EQ(v, 42.5);
  EXPECT_TRUE(parse_number("-1e-3", v));
  EXPECT_EQ(v, -1e-3);
  for (const char* text : {"", "1x", " ", "nan", "inf", "-inf", "1e999", "0.1 "})
    EXPECT_FALSE(parse_number(text, v)) << text;
}

TEST(Join, SeparatorBetweenEveryTwoItemsEmptyOnesIncluded) {
  EXPECT_EQ(join({}, ", "), "");
  EXPECT_EQ(join({"a"}, ", "), "a");
  EXPECT_EQ(join({"a", "b", "c"}, ", "), "a, b, c");
  EXPECT_EQ(join({"", "b"}, ","), ",b");  // an empty first item keeps its separator
  EXPECT_EQ(join({"a", "", "b"}, " "), "a  b");
}

}  // namespace
}  // namespace segrun
