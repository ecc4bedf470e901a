#include "sweeps/table.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"

namespace segrun::sweeps {
namespace {

// 3 classes: "wall" IoU 5/7, Acc 2/3; "building" predicted but absent from GT (IoU 0, Acc NaN);
// "sky" absent everywhere (both NaN).
ClassTable example() {
  ClassTable t;
  t.class_names = {"wall", "building", "sky"};
  t.iou = {5.0 / 7.0, 0.0, std::nan("")};
  t.acc = {2.0 / 3.0, std::nan(""), std::nan("")};
  t.mIoU = 35.714285714285715;
  t.mAcc = 66.66666666666667;
  t.aAcc = 69.23076923076923;
  return t;
}

TEST(ClassTable, Text) {
  const std::string expected =
      "+----------+-------+-------+\n"
      "| Class    |   IoU |   Acc |\n"
      "+----------+-------+-------+\n"
      "| wall     | 71.43 | 66.67 |\n"
      "| building |  0.00 |   nan |\n"
      "| sky      |   nan |   nan |\n"
      "+----------+-------+-------+\n"
      "\n"
      "+-------+-------+-------+\n"
      "|  aAcc |  mIoU |  mAcc |\n"
      "+-------+-------+-------+\n"
      "| 69.23 | 35.71 | 66.67 |\n"
      "+-------+-------+-------+\n";
  EXPECT_EQ(format_class_table(example(), TableFormat::kText, false), expected);
}

TEST(ClassTable, Markdown) {
  const std::string expected =
      "| Class    |   IoU |   Acc |\n"
      "|:---------|------:|------:|\n"
      "| wall     | 71.43 | 66.67 |\n"
      "| building |  0.00 |     - |\n"
      "| sky      |     - |     - |\n"
      "\n"
      "|  aAcc |  mIoU |  mAcc |\n"
      "|------:|------:|------:|\n"
      "| 69.23 | 35.71 | 66.67 |\n";
  EXPECT_EQ(format_class_table(example(), TableFormat::kMarkdown, false), expected);
}

TEST(ClassTable, CsvSkippingNanRows) {
  const std::string all =
      "Class,IoU,Acc\n"
      "wall,71.43,66.67\n"
      "building,0.00,nan\n"
      "sky,nan,nan\n"
      "\n"
      "aAcc,mIoU,mAcc\n"
      "69.23,35.71,66.67\n";
  EXPECT_EQ(format_class_table(example(), TableFormat::kCsv, false), all);
  // "sky" (IoU NaN) goes; "building" (IoU 0, counted in mIoU) stays.
  const std::string skipped =
      "Class,IoU,Acc\n"
      "wall,71.43,66.67\n"
      "building,0.00,nan\n"
      "\n"
      "aAcc,mIoU,mAcc\n"
      "69.23,35.71,66.67\n";
  EXPECT_EQ(format_class_table(example(), TableFormat::kCsv, true), skipped);
}

TEST(ClassTable, TextSkippingNanRowsAndDefaultNames) {
  ClassTable t = example();
  t.class_names.clear();
  const std::string expected =
      "+---------+-------+-------+\n"
      "| Class   |   IoU |   Acc |\n"
      "+---------+-------+-------+\n"
      "| class_0 | 71.43 | 66.67 |\n"
      "| class_1 |  0.00 |   nan |\n"
      "+---------+-------+-------+\n"
      "\n"
      "+-------+-------+-------+\n"
      "|  aAcc |  mIoU |  mAcc |\n"
      "+-------+-------+-------+\n"
      "| 69.23 | 35.71 | 66.67 |\n"
      "+-------+-------+-------+\n"
      "1 of 3 classes neither in the ground truth nor predicted: not listed, not in mIoU\n";
  EXPECT_EQ(format_class_table(t, TableFormat::kText, true), expected);
  t.acc.pop_back();
  EXPECT_THROW(format_class_table(t, TableFormat::kText, false), DataError);
}

TEST(Table, LatexEscapesAndPlusMinus) {
  const std::string expected =
      "\\begin{tabular}{lr}\n"
      "\\toprule\n"
      "method & mIoU \\\\\n"
      "\\midrule\n"
      "a\\_b \\& c 50\\% & 45.10 $\\pm$ 0.30 \\\\\n"
      "\\bottomrule\n"
      "\\end{tabular}\n";
  EXPECT_EQ(format_table({"method", "mIoU"}, {{"a_b & c 50%", "45.10 \xC2\xB1 0.30"}}, TableFormat::kLatex), expected);
}

TEST(Table, CsvQuotingMarkdownEscapingUtf8Width) {
  EXPECT_EQ(format_table({"name", "note"}, {{"bed ", "x,y"}, {"say \"hi\"", "plain"}}, TableFormat::kCsv),
            "name,note\n\"bed \",\"x,y\"\n\"say \"\"hi\"\"\",plain\n");
  EXPECT_EQ(format_table({"a|b", "v"}, {{"x", "1"}}, TableFormat::kMarkdown),
            "| a\\|b |   v |\n"
            "|:-----|----:|\n"
            "| x    |   1 |\n");
  // "±" is one column wide.
  EXPECT_EQ(
      format_table({"run", "mIoU"}, {{"r1", "4.0 \xC2\xB1 0.1"}}, TableFormat::kText, {Align::kLeft, Align::kLeft}),
      "+-----+-----------+\n"
      "| run | mIoU      |\n"
      "+-----+-----------+\n"
      "| r1  | 4.0 \xC2\xB1 0.1 |\n"
      "+-----+-----------+\n");
}

TEST(Table, ValidationAndFormatNames) {
  EXPECT_THROW(format_table({"a", "b"}, {{"1"}}, TableFormat::kCsv), DataError);
  EXPECT_THROW(format_table({}, {}, TableFormat::kCsv), DataError);
  EXPECT_THROW(format_table({"a"}, {{"1"}}, TableFormat::kCsv, {Align::kLeft, Align::kLeft}), DataError);
  EXPECT_EQ(parse_table_format("md"), TableFormat::kMarkdown);
  EXPECT_EQ(parse_table_format("latex"), TableFormat::kLatex);
  EXPECT_EQ(parse_table_format("text"), TableFormat::kText);
  EXPECT_EQ(parse_table_format("csv"), TableFormat::kCsv);
  EXPECT_EQ(parse_table_format("html"), TableFormat::kHtml);
  EXPECT_THROW(parse_table_format("rst"), ConfigError);
  EXPECT_EQ(format_number(0.125, 2, "nan"), "0.12");  // printf rounding of the binary value
  EXPECT_EQ(format_number(std::nan(""), 2, "-"), "-");
}

}  // namespace
}  // namespace segrun::sweeps
