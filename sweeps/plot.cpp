#include "sweeps/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <sstream>

#include "core/error.h"

namespace segrun::sweeps {
namespace {

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

bool parse_number(const std::string& s, double& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return end && *end == '\0' && std::isfinite(v);
}

double nice_step(double range) {
  const double raw = range / 5.0;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

std::string tick_label(double v, double step) {
  int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, std::fabs(v) < step * 1e-6 ? 0.0 : v);
  return buf;
}

struct Point {
  double x;       // position in data space (log10 applied, or category index)
  double mean;
  double std;     // NaN when n < 2
};

}  // namespace

std::string render_svg_plot(const ResultGrid& grid, const PlotOptions& options) {
  std::vector<std::string> keys = grid.row_keys;
  keys.insert(keys.end(), grid.col_keys.begin(), grid.col_keys.end());
  if (keys.empty()) throw ConfigError("--plot: the runs sweep no key to put on the x axis");
  const std::string x_key = options.x_key.empty() ? keys.front() : options.x_key;
  if (std::find(keys.begin(), keys.end(), x_key) == keys.end())
    throw ConfigError("--plot-x " + x_key + ": not a row or column key of the table");
  std::vector<std::string> series_keys;
  for (const auto& k : keys)
    if (k != x_key) series_keys.push_back(k);

  // x values in the grid's order (rows/cols are sorted by value already).
  std::vector<std::string> x_values;
  for (const auto& c : grid.cells) {
    auto it = c.config.find(x_key);
    const std::string v = it == c.config.end() ? "" : it->second;
    if (std::find(x_values.begin(), x_values.end(), v) == x_values.end()) x_values.push_back(v);
  }
  bool numeric = true;
  std::vector<double> xs;
  for (const auto& v : x_values) {
    double d = 0;
    numeric = numeric && parse_number(v, d);
    xs.push_back(d);
  }
  if (numeric) {
    std::vector<size_t> order(x_values.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return xs[a] < xs[b]; });
    std::vector<std::string> sv;
    std::vector<double> sx;
    for (size_t i : order) {
      sv.push_back(x_values[i]);
      sx.push_back(xs[i]);
    }
    x_values = sv;
    xs = sx;
  }
  const bool log_x = numeric && xs.size() >= 2 && xs.front() > 0 && xs.back() / xs.front() >= 20.0;
  auto x_pos = [&](const std::string& v) {
    const size_t i = static_cast<size_t>(std::find(x_values.begin(), x_values.end(), v) - x_values.begin());
    if (!numeric) return static_cast<double>(i);
    return log_x ? std::log10(xs[i]) : xs[i];
  };

  // Series: one per combination of the other keys, in grid order.
  std::vector<std::string> labels;
  std::map<std::string, std::vector<Point>> series;
  for (const auto& c : grid.cells) {
    std::string label;
    for (const auto& k : series_keys) {
      auto it = c.config.find(k);
      label += (label.empty() ? "" : ", ") + k + "=" + (it == c.config.end() ? "-" : display_value(it->second));
    }
    if (label.empty()) label = grid.metric;
    if (!series.count(label)) labels.push_back(label);
    auto it = c.config.find(x_key);
    series[label].push_back({x_pos(it == c.config.end() ? "" : it->second), c.mean, c.std});
  }
  for (auto& [label, points] : series)
    std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.x < b.x; });

  // Data ranges.
  double x0 = 0, x1 = 1, y0 = std::numeric_limits<double>::infinity(), y1 = -y0;
  std::vector<double> positions;
  for (const auto& v : x_values) positions.push_back(x_pos(v));
  x0 = *std::min_element(positions.begin(), positions.end());
  x1 = *std::max_element(positions.begin(), positions.end());
  if (x1 == x0) {
    x0 -= 0.5;
    x1 += 0.5;
  }
  const double xpad = (x1 - x0) * 0.06;
  x0 -= xpad;
  x1 += xpad;
  for (const auto& [label, points] : series)
    for (const auto& p : points) {
      const double e = std::isnan(p.std) ? 0.0 : p.std;
      y0 = std::min(y0, p.mean - e);
      y1 = std::max(y1, p.mean + e);
    }
  if (y1 - y0 < 1e-9) {
    y0 -= 1.0;
    y1 += 1.0;
  }
  const double ystep = nice_step(y1 - y0);
  y0 = std::floor(y0 / ystep) * ystep;
  y1 = std::ceil(y1 / ystep) * ystep;

  const double W = options.width, H = options.height;
  const double left = 70, right = 190, top = 40, bottom = 60;
  const double pw = W - left - right, ph = H - top - bottom;
  auto sx = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto sy = [&](double y) { return top + (1.0 - (y - y0) / (y1 - y0)) * ph; };

  std::ostringstream svg;
  const std::string title = options.title.empty() ? grid.metric + " vs " + x_key : options.title;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << options.width
      << "\" height=\"" << options.height << "\" viewBox=\"0 0 " << options.width << " " << options.height
      << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
      << "<title>" << xml_escape(title) << "</title>\n"
      << "<rect x=\"0\" y=\"0\" width=\"" << options.width << "\" height=\"" << options.height
      << "\" fill=\"white\"/>\n"
      << "<text x=\"" << num(left + pw / 2) << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">"
      << xml_escape(title) << "</text>\n";
  // Grid lines and y ticks.
  svg << "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  for (double y = y0; y <= y1 + ystep * 1e-6; y += ystep)
    svg << "<line x1=\"" << num(left) << "\" y1=\"" << num(sy(y)) << "\" x2=\"" << num(left + pw)
        << "\" y2=\"" << num(sy(y)) << "\"/>\n";
  svg << "</g>\n<g text-anchor=\"end\">\n";
  for (double y = y0; y <= y1 + ystep * 1e-6; y += ystep)
    svg << "<text x=\"" << num(left - 6) << "\" y=\"" << num(sy(y) + 4) << "\">" << tick_label(y, ystep)
        << "</text>\n";
  svg << "</g>\n<g text-anchor=\"middle\">\n";
  for (const auto& v : x_values) {
    const double px = sx(x_pos(v));
    svg << "<line x1=\"" << num(px) << "\" y1=\"" << num(top + ph) << "\" x2=\"" << num(px) << "\" y2=\""
        << num(top + ph + 5) << "\" stroke=\"black\"/>\n"
        << "<text x=\"" << num(px) << "\" y=\"" << num(top + ph + 19) << "\">"
        << xml_escape(v.empty() ? "-" : display_value(v)) << "</text>\n";
  }
  svg << "</g>\n";
  // Axes and labels.
  svg << "<rect x=\"" << num(left) << "\" y=\"" << num(top) << "\" width=\"" << num(pw) << "\" height=\""
      << num(ph) << "\" fill=\"none\" stroke=\"black\"/>\n"
      << "<text x=\"" << num(left + pw / 2) << "\" y=\"" << num(H - 16) << "\" text-anchor=\"middle\">"
      << xml_escape(x_key + (log_x ? " (log scale)" : "")) << "</text>\n"
      << "<text transform=\"translate(18 " << num(top + ph / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
      << xml_escape(grid.metric) << "</text>\n";
  // Series.
  for (size_t s = 0; s < labels.size(); ++s) {
    const std::string color = kPalette[s % (sizeof(kPalette) / sizeof(kPalette[0]))];
    const auto& points = series[labels[s]];
    svg << "<g stroke=\"" << color << "\" fill=\"" << color << "\">\n";
    if (points.size() >= 2) {
      svg << "<polyline fill=\"none\" stroke-width=\"1.5\" points=\"";
      for (size_t i = 0; i < points.size(); ++i)
        svg << (i ? " " : "") << num(sx(points[i].x) + 5.0 * (static_cast<double>(s) - (static_cast<double>(labels.size()) - 1.0) / 2.0))
            << "," << num(sy(points[i].mean));
      svg << "\"/>\n";
    }
    // Series sharing an x value are dodged sideways by a few pixels so their error bars show.
    const double dodge = 5.0 * (static_cast<double>(s) - (static_cast<double>(labels.size()) - 1.0) / 2.0);
    for (const auto& p : points) {
      const double px = sx(p.x) + dodge;
      if (!std::isnan(p.std)) {
        const double ya = sy(p.mean - p.std), yb = sy(p.mean + p.std);
        svg << "<line class=\"errorbar\" x1=\"" << num(px) << "\" y1=\"" << num(ya) << "\" x2=\"" << num(px)
            << "\" y2=\"" << num(yb) << "\"/>\n";
        for (double yc : {ya, yb})
          svg << "<line x1=\"" << num(px - 4) << "\" y1=\"" << num(yc) << "\" x2=\"" << num(px + 4)
              << "\" y2=\"" << num(yc) << "\"/>\n";
      }
      svg << "<circle class=\"point\" cx=\"" << num(px) << "\" cy=\"" << num(sy(p.mean)) << "\" r=\"3.5\"/>\n";
    }
    const double ly = top + 10 + 18.0 * static_cast<double>(s);
    svg << "<line x1=\"" << num(left + pw + 14) << "\" y1=\"" << num(ly) << "\" x2=\"" << num(left + pw + 34)
        << "\" y2=\"" << num(ly) << "\" stroke-width=\"2\"/>\n"
        << "<text x=\"" << num(left + pw + 40) << "\" y=\"" << num(ly + 4) << "\" stroke=\"none\" fill=\"black\">"
        << xml_escape(labels[s]) << "</text>\n"
        << "</g>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace segrun::sweeps
