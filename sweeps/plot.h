#pragma once
// Plots of a result grid as standalone SVG 1.1 (no plotting library is available on the target
// machines, and SVG is vector: it scales into papers and renders in browsers and GitHub): the
// metric against one swept key, one line per combination of the other swept keys, points at the
// seed mean with ±std error bars (n >= 2). Numeric x values are placed to scale (log10 when all
// are positive and span >= 20x, e.g. learning rates), ticks at the swept values; other values
// are categorical, evenly spaced in the grid's order. Pure functions.

#include <string>

#include "sweeps/results.h"

namespace segrun::sweeps {

struct PlotOptions {
  std::string x_key;  // "" = the grid's first row key (or first column key)
  std::string title;  // "" = "<metric> vs <x_key>"
  int width = 640;
  int height = 420;
};

// ConfigError when x_key is not a row/column key of the grid or the grid has no swept key.
std::string render_svg_plot(const ResultGrid& grid, const PlotOptions& options);

}  // namespace segrun::sweeps
