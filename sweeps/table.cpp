#include "sweeps/table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "core/format.h"

namespace segrun::sweeps {
namespace {

// Number of UTF-8 code points (bytes that are not continuation bytes).
size_t display_width(const std::string& s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string pad(const std::string& s, size_t width, Align align) {
  const size_t w = display_width(s);
  if (w >= width) return s;
  const std::string fill(width - w, ' ');
  return align == Align::kLeft ? s + fill : fill + s;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

std::string escape_markdown(const std::string& s) { return replace_all(s, "|", "\\|"); }

std::string escape_csv(const std::string& s) {
  const bool quote =
      s.find_first_of(",\"\r\n") != std::string::npos || (!s.empty() && (s.front() == ' ' || s.back() == ' '));
  if (!quote) return s;
  return "\"" + replace_all(s, "\"", "\"\"") + "\"";
}

std::string escape_latex(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    switch (c) {
      case '\\': out += "\\textbackslash{}"; break;
      case '&':
      case '%':
      case '$':
      case '#':
      case '_':
      case '{':
      case '}':
        out += '\\';
        out += c;
        break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      default:
        if (s.compare(i, 2, "\xC2\xB1") == 0) {  // U+00B1 plus-minus sign
          out += "$\\pm$";
          ++i;
        } else if (s.compare(i, 2, "\xCE\x94") == 0) {  // U+0394 Greek capital delta
          out += "$\\Delta$";
          ++i;
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::vector<size_t> column_widths(const std::vector<std::string>& header,
                                  const std::vector<std::vector<std::string>>& rows, size_t min_width) {
  std::vector<size_t> widths(header.size(), min_width);
  for (size_t c = 0; c < header.size(); ++c) widths[c] = std::max(widths[c], display_width(header[c]));
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], display_width(row[c]));
  return widths;
}

std::string text_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                       const std::vector<Align>& align) {
  const auto widths = column_widths(header, rows, 0);
  std::string rule = "+";
  for (size_t w : widths) rule += std::string(w + 2, '-') + "+";
  rule += "\n";
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (size_t c = 0; c < cells.size(); ++c) s += " " + pad(cells[c], widths[c], align[c]) + " |";
    return s + "\n";
  };
  std::string out = rule + line(header) + rule;
  for (const auto& row : rows) out += line(row);
  return out + rule;
}

std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                           const std::vector<Align>& align) {
  std::vector<std::string> h;
  for (const auto& cell : header) h.push_back(escape_markdown(cell));
  std::vector<std::vector<std::string>> r;
  for (const auto& row : rows) {
    r.emplace_back();
    for (const auto& cell : row) r.back().push_back(escape_markdown(cell));
  }
  const auto widths = column_widths(h, r, 3);
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (size_t c = 0; c < cells.size(); ++c) s += " " + pad(cells[c], widths[c], align[c]) + " |";
    return s + "\n";
  };
  std::string out = line(h) + "|";
  for (size_t c = 0; c < widths.size(); ++c) {
    out += align[c] == Align::kLeft ? ":" + std::string(widths[c] + 1, '-') : std::string(widths[c] + 1, '-') + ":";
    out += "|";
  }
  out += "\n";
  for (const auto& row : r) out += line(row);
  return out;
}

std::string csv_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  auto line = [](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < cells.size(); ++c) s += (c ? "," : "") + escape_csv(cells[c]);
    return s + "\n";
  };
  std::string out = line(header);
  for (const auto& row : rows) out += line(row);
  return out;
}

std::string latex_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                        const std::vector<Align>& align, const std::vector<CellIndex>& bold = {}) {
  auto line = [&](const std::vector<std::string>& cells, long r) {
    std::string s;
    for (size_t c = 0; c < cells.size(); ++c) {
      std::string cell = escape_latex(cells[c]);
      if (r >= 0 && std::find(bold.begin(), bold.end(), CellIndex(static_cast<size_t>(r), c)) != bold.end())
        cell = "\\textbf{" + cell + "}";
      s += (c ? " & " : "") + cell;
    }
    return s + " \\\\\n";
  };
  std::string spec;
  for (Align a : align) spec += a == Align::kLeft ? 'l' : 'r';
  std::string out = "\\begin{tabular}{" + spec + "}\n\\toprule\n" + line(header, -1) + "\\midrule\n";
  for (size_t r = 0; r < rows.size(); ++r) out += line(rows[r], static_cast<long>(r));
  return out + "\\bottomrule\n\\end{tabular}\n";
}

// One element per line; `strong` holds the (row, column) indices to wrap in <strong>.
std::string html_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                       const std::vector<Align>& align, const std::vector<CellIndex>& strong = {}) {
  auto cls = [&](size_t c) { return align[c] == Align::kLeft ? "l" : "r"; };
  std::string out = "<table>\n<thead>\n<tr>";
  for (size_t c = 0; c < header.size(); ++c)
    out += std::string("<th class=\"") + cls(c) + "\">" + escape_html(header[c]) + "</th>";
  out += "</tr>\n</thead>\n<tbody>\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    out += "<tr>";
    for (size_t c = 0; c < rows[r].size(); ++c) {
      std::string cell = escape_html(rows[r][c]);
      if (std::find(strong.begin(), strong.end(), CellIndex(r, c)) != strong.end())
        cell = "<strong>" + cell + "</strong>";
      out += std::string("<td class=\"") + cls(c) + "\">" + cell + "</td>";
    }
    out += "</tr>\n";
  }
  return out + "</tbody>\n</table>\n";
}

std::string nan_text(TableFormat fmt) {
  switch (fmt) {
    case TableFormat::kMarkdown:
    case TableFormat::kHtml: return "-";
    case TableFormat::kLatex: return "--";
    default: return "nan";
  }
}

}  // namespace

TableFormat parse_table_format(const std::string& name) {
  if (name == "text") return TableFormat::kText;
  if (name == "markdown" || name == "md") return TableFormat::kMarkdown;
  if (name == "csv") return TableFormat::kCsv;
  if (name == "latex") return TableFormat::kLatex;
  if (name == "html") return TableFormat::kHtml;
  SEGRUN_THROW(ConfigError, "unknown table format '" << name << "' (known: text, markdown, csv, latex, html)");
}

std::string escape_html(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string format_number(double value, int decimals, const std::string& nan) {
  if (std::isnan(value)) return nan;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                         TableFormat fmt, const std::vector<Align>& align_in) {
  SEGRUN_CHECK(!header.empty(), DataError, "table: empty header");
  for (size_t r = 0; r < rows.size(); ++r) {
    SEGRUN_CHECK(rows[r].size() == header.size(), DataError,
                 "table: row " << r << " has " << rows[r].size() << " cells, header has " << header.size());
  }
  SEGRUN_CHECK(align_in.empty() || align_in.size() == header.size(), DataError,
               "table: " << align_in.size() << " alignments for " << header.size() << " columns");
  std::vector<Align> align = align_in;
  if (align.empty()) {
    align.assign(header.size(), Align::kRight);
    align[0] = Align::kLeft;
  }
  switch (fmt) {
    case TableFormat::kText: return text_table(header, rows, align);
    case TableFormat::kMarkdown: return markdown_table(header, rows, align);
    case TableFormat::kCsv: return csv_table(header, rows);
    case TableFormat::kLatex: return latex_table(header, rows, align);
    case TableFormat::kHtml: return html_table(header, rows, align);
  }
  SEGRUN_THROW(DataError, "table: unknown format");
}

std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                         TableFormat fmt, const std::vector<Align>& align, const std::vector<CellIndex>& emphasized) {
  for (const auto& [r, c] : emphasized)
    SEGRUN_CHECK(r < rows.size() && c < header.size(), DataError,
                 "table: emphasized cell (" << r << ", " << c << ") is outside the table");
  if (fmt == TableFormat::kLatex || fmt == TableFormat::kHtml) {
    format_table(header, rows, fmt, align);  // validation
    std::vector<Align> a = align;
    if (a.empty()) {
      a.assign(header.size(), Align::kRight);
      a[0] = Align::kLeft;
    }
    return fmt == TableFormat::kLatex ? latex_table(header, rows, a, emphasized)
                                      : html_table(header, rows, a, emphasized);
  }
  std::vector<std::vector<std::string>> marked = rows;
  for (const auto& [r, c] : emphasized)
    marked[r][c] = fmt == TableFormat::kMarkdown ? "**" + rows[r][c] + "**" : rows[r][c] + "*";
  return format_table(header, marked, fmt, align);
}

std::string format_class_table(const ClassTable& t, TableFormat fmt, bool skip_nan_rows) {
  const size_t k = t.iou.size();
  SEGRUN_CHECK(t.acc.size() == k && (t.class_names.empty() || t.class_names.size() == k), DataError,
               "class table: " << t.class_names.size() << " names, " << k << " IoU values and " << t.acc.size()
                               << " Acc values");
  const std::string nan = nan_text(fmt);
  std::vector<std::vector<std::string>> rows;
  size_t skipped = 0;
  for (size_t c = 0; c < k; ++c) {
    if (skip_nan_rows && std::isnan(t.iou[c])) {
      ++skipped;
      continue;
    }
    rows.push_back({t.class_names.empty() ? "class_" + std::to_string(c) : t.class_names[c],
                    format_number(t.iou[c] * 100.0, 2, nan), format_number(t.acc[c] * 100.0, 2, nan)});
  }
  std::string out = format_table({"Class", "IoU", "Acc"}, rows, fmt);
  out += "\n";
  out += format_table({"aAcc", "mIoU", "mAcc"},
                      {{format_number(t.aAcc, 2, nan), format_number(t.mIoU, 2, nan), format_number(t.mAcc, 2, nan)}},
                      fmt, {Align::kRight, Align::kRight, Align::kRight});
  // mmseg lists every class (nan where undefined); a text table that leaves rows out says how many.
  if (fmt == TableFormat::kText && skipped > 0)
    out += segrun::format("{} of {} classes neither in the ground truth nor predicted: not listed, not in mIoU\n",
                          skipped, k);
  return out;
}

}  // namespace segrun::sweeps
