#pragma once
// Tables for people and papers: one rectangular table of strings rendered as aligned text
// (PrettyTable-style borders, as mmsegmentation logs its per-class results), GitHub markdown,
// CSV (RFC 4180 quoting), a LaTeX booktabs tabular or an HTML <table> (for `segrun report`); plus
// the per-class metric table built on it.
// Pure functions, thread-safe, no torch.

#include <string>
#include <utility>
#include <vector>

namespace segrun::sweeps {

enum class TableFormat { kText, kMarkdown, kCsv, kLatex, kHtml };
enum class Align { kLeft, kRight };

// "text" | "markdown" (or "md") | "csv" | "latex" | "html"; ConfigError listing the names otherwise.
TableFormat parse_table_format(const std::string& name);

// Every row must have header.size() cells (DataError otherwise). align: one entry per column, or
// empty for the default (first column left, the others right). Text and markdown pad columns to
// their widths in code points; markdown escapes '|'; LaTeX escapes its special characters and
// writes "±" as $\pm$ and "Δ" as $\Delta$ (needs \usepackage{booktabs}). HTML is a <table> with a
// <thead> and a <tbody>, one element per line, cells escaped (escape_html) and classed "l" or "r"
// by their alignment, so that each cell's text is the markdown cell's without its markup. The
// result ends with a newline.
std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                         TableFormat fmt, const std::vector<Align>& align = {});

// Same, with some cells emphasized (e.g. the best value of a result table), given as
// (row, column) indices into rows: markdown **x**, LaTeX \textbf{x}, HTML <strong>x</strong>, text and
// CSV "x*".
using CellIndex = std::pair<size_t, size_t>;
std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                         TableFormat fmt, const std::vector<Align>& align, const std::vector<CellIndex>& emphasized);

// Per-class segmentation results, laid out like engine::SegMetrics: iou and acc are fractions
// (NaN where undefined), mIoU / mAcc / aAcc are already in percent. class_names may be empty
// ("class_<i>"); otherwise all three vectors have the same length (DataError otherwise).
struct ClassTable {
  std::vector<std::string> class_names;
  std::vector<double> iou;
  std::vector<double> acc;
  double mIoU = 0.0;
  double mAcc = 0.0;
  double aAcc = 0.0;
};

// Two tables separated by one empty line: "Class | IoU | Acc" (values x100, 2 decimals) and the
// summary "aAcc | mIoU | mAcc" (2 decimals). NaN is written "nan" in text and CSV, "-" in
// markdown and HTML and "--" in LaTeX. skip_nan_rows drops the classes whose IoU is NaN (absent from both
// GT and prediction; a class with IoU 0 and NaN Acc is kept since it counts in mIoU); in text, a
// last line then says how many classes were left out.
std::string format_class_table(const ClassTable& table, TableFormat fmt, bool skip_nan_rows);

// Text made safe inside HTML elements and double-quoted attributes: & < > " ' as entities.
std::string escape_html(const std::string& text);

// value with `decimals` decimals ("%.*f"); NaN as nan_text.
std::string format_number(double value, int decimals, const std::string& nan_text);

}  // namespace segrun::sweeps
