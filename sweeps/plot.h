#pragma once
// Plots of a result grid drawn by gnuplot (Debian package gnuplot-nox, 5.x): the metric against
// one swept key, one line per combination of the other swept keys, points at the seed mean with
// ±std error bars where a configuration has n >= 2 seeds. Numeric x values are placed to scale
// (log10 when all are positive and span >= 20x, e.g. learning rates) with ticks at the swept
// values; other values (strings, booleans, arrays, configurations without the key) make a
// categorical axis, evenly spaced in the grid's order.
//
// write_plot writes, next to the output FILE.png|FILE.svg, the gnuplot script FILE.gp and its data
// FILE.dat (kept: users edit the script and re-run `gnuplot FILE.gp` from that folder; both name
// the other files relative to it), then runs gnuplot on the script (fork/exec of an argument
// vector, no shell, working directory = the output's folder). render_gnuplot is the pure part.
// FILE.gp's first line stamps it with a hash of the rest: a FILE.gp still as segrun wrote it is
// replaced, one edited since (or not segrun's) is kept and drawn with the new FILE.dat.
// Threading: render_gnuplot is a pure function; write_plot spawns a child process and blocks
// until it ends (safe from any thread, but not async-signal-safe).

#include <string>

#include "sweeps/results.h"

namespace segrun::sweeps {

struct PlotOptions {
  std::string x_key;    // "" = the grid's first row key (or first column key)
  std::string title;    // "" = "<name>: <metric> vs <x_key>" (without "<name>: " when name is "")
  std::string name;     // the sweep's name, for the default title
  std::string x_label;  // "" = x_key (+ " (log scale)")
  std::string y_label;  // "" = the metric
  int width = 640;      // pixels (PNG) or SVG user units
  int height = 420;
  std::string gnuplot = "gnuplot";  // executable: a name looked up on PATH, or a path
};

// The two files gnuplot needs. The script names the data file and the output by file name only.
struct GnuplotFiles {
  std::string script;  // FILE.gp
  std::string data;    // FILE.dat: one block per series (separated by two blank lines, `index i`),
                       // columns x, mean, std (NaN when n < 2), n, label
};

// ConfigError when output_name does not end in .png or .svg, x_key is not a row/column key of the
// grid, or the grid has no swept key or no cell. output_name is a file name (no folder).
GnuplotFiles render_gnuplot(const ResultGrid& grid, const PlotOptions& options, const std::string& output_name);

// Paths written by write_plot.
struct PlotFiles {
  std::string output;
  std::string script;
  std::string data;
  bool script_kept = false;  // FILE.gp was edited since segrun wrote it: left as it is, and gnuplot ran it
};

// ConfigError naming the file unless FILE.png|svg and FILE.dat at output_path (where it resolves:
// "new/../fig.svg" is ./fig.svg) are free for write_plot: they do not exist, or a FILE.gp beside
// them is segrun's (stamped, edited or not, or equal to `segrun_script`, what render_gnuplot
// writes now). Files of those names beside no FILE.gp, or beside the user's own, are theirs and
// never overwritten.
void check_plot_target(const std::string& output_path, const std::string& segrun_script);

// Writes FILE.dat and (unless the user edited it) FILE.gp next to output_path (atomically) and
// runs gnuplot on FILE.gp. ConfigError as check_plot_target and
// render_gnuplot; IoError when the files cannot be written; IoError "gnuplot not found ..." when
// the executable cannot be started, "gnuplot failed (exit N): <first line of its stderr>" when it
// fails or writes no output file.
PlotFiles write_plot(const ResultGrid& grid, const PlotOptions& options, const std::string& output_path);

}  // namespace segrun::sweeps
