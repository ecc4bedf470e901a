// `segrun sweep plan|run|status`, `segrun table` and `segrun report`: glue between the CLI and
// sweeps/; none of them starts MPI in this process (`sweep run` starts mpirun jobs through the cluster layer).
#include "launcher/command_group.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "sweeps/plot.h"
#include "sweeps/registry.h"
#include "sweeps/report.h"
#include "sweeps/results.h"
#include "sweeps/runner.h"
#include "sweeps/slurm_jobs.h"
#include "sweeps/spec.h"

namespace segrun::launcher {

namespace {

struct SweepOptions {
  CLI::App* plan = nullptr;
  CLI::App* run = nullptr;
  CLI::App* status = nullptr;
  CLI::App* table = nullptr;
  CLI::App* report = nullptr;

  std::string spec;
  std::string runs_dir;
  std::string list_format = "text";
  std::string on = "local";
  int max_parallel = 0;
  bool dry_run = false;
  std::string status_metric;

  std::string source;
  std::vector<std::string> rows;
  std::vector<std::string> cols;
  std::string metric;
  std::vector<std::string> baseline;
  std::vector<std::string> where;
  std::string format = "md";
  std::vector<std::string> per_class;
  std::string plot;
  std::string plot_x;
  int decimals = 2;
  std::string out;
  std::vector<std::string> classes;
};

int run_table_command(const SweepOptions& s);
int run_report_command(const SweepOptions& s);

int run_sweep_command(const SweepOptions& s, MpiHolder& mpi);

}  // namespace

void add_sweep_commands(CommandRegistry& registry) {
  auto options = std::make_shared<SweepOptions>();  // shared by the actions, alive as long as they are
  SweepOptions& s = *options;
  CLI::App& app = registry.app();
  const CommandAction action = [options](MpiHolder& mpi) { return run_sweep_command(*options, mpi); };
  auto* sweep = app.add_subcommand("sweep", "ablation sweeps from one TOML spec: plan, run, status");
  sweep->require_subcommand(1);

  s.plan = registry.add("plan", "list the runs of a sweep and what would be reused, resumed or started", action, sweep);
  s.plan->add_option("spec", s.spec, "sweep spec TOML")->required();
  s.plan->add_option("--runs-dir", s.runs_dir, "runs folder (default: the spec's runs_dir, else runs/<name>)")
      ->check(non_empty());
  s.plan->add_option("--format", s.list_format, "text | md | csv | latex | html")->capture_default_str();

  s.run = registry.add("run", "run every run not done yet (finished runs are reused, interrupted ones resumed)", action,
                       sweep);
  s.run->add_option("spec", s.spec, "sweep spec TOML")->required();
  s.run
      ->add_option("--on", s.on,
                   "scheduler: local (mpirun jobs packed onto this machine's cores) | slurm (a job array, like `segrun "
                   "submit SPEC`)")
      ->capture_default_str()
      ->check(CLI::IsMember({"local", "slurm"}));
  s.run->add_option("--max-parallel", s.max_parallel, "runs at once (default: cores / ranks per run)")
      ->check(int_range(1, 4096));
  s.run->add_option("--runs-dir", s.runs_dir, "runs folder (default: the spec's runs_dir, else runs/<name>)")
      ->check(non_empty());
  s.run->add_flag("--dry-run", s.dry_run, "print the mpirun commands, run nothing");

  s.status = registry.add("status", "state, progress and last metric of every run of a sweep", action, sweep);
  s.status->add_option("spec", s.spec, "sweep spec TOML")->required();
  s.status->add_option("--runs-dir", s.runs_dir, "runs folder (default: the spec's runs_dir, else runs/<name>)")
      ->check(non_empty());
  s.status->add_option("--metric", s.status_metric, "metric column (default: the spec's table metric)");
  s.status->add_option("--format", s.list_format, "text | md | csv | latex | html")->capture_default_str();

  s.table = registry.add(
      "table", "result table of a sweep (or of every run in a runs folder): mean ± std over seeds, delta, best",
      action);
  s.table->add_option("source", s.source, "sweep spec TOML, a runs folder, or one run folder")->required();
  s.table->add_option("--rows", s.rows, "swept key(s) on the rows (comma-separated)")->delimiter(',');
  s.table->add_option("--cols", s.cols, "swept key(s) on the columns (comma-separated)")->delimiter(',');
  s.table->add_option("--metric", s.metric, "result.json metric or class name (default mIoU)");
  s.table->add_option("--baseline", s.baseline, "KEY=VALUE of the baseline configuration (repeatable)");
  s.table->add_option("--where", s.where,
                      "KEY=VALUE: keep only these configurations (repeatable; one key given twice keeps either value)");
  s.table->add_option("--format", s.format, "md | csv | latex | json | text | html")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "markdown", "csv", "latex", "json", "text", "html"}));
  s.table
      ->add_option("--per-class", s.per_class,
                   "class names (or \"spec\": the spec's [table] per_class): print the per-class IoU table instead")
      ->delimiter(',');
  s.table->add_option(
      "--plot", s.plot,
      "also plot the metric against a swept key with gnuplot: FILE.png or FILE.svg (+ FILE.gp, FILE.dat; a FILE.gp "
      "you edited is kept)");
  s.table->add_option("--plot-x", s.plot_x, "swept key on the plot's x axis (default: the first row key)");
  s.table->add_option("--runs-dir", s.runs_dir, "with a spec: its runs folder (default: runs_dir / runs/<name>)")
      ->check(non_empty());
  s.table->add_option("--decimals", s.decimals, "decimals of the values")
      ->capture_default_str()
      ->check(int_range(0, 6));

  s.report = registry.add("report",
                          "one self-contained HTML file: a sweep's table and plot, and per run its curves, per-class "
                          "IoU and sample predictions (or those of one run folder)",
                          action);
  s.report->add_option("source", s.source, "sweep spec TOML, a runs folder, or one run folder")->required();
  s.report->add_option("--out", s.out, "the HTML file to write (an earlier report there is replaced, no other file)")
      ->required();
  s.report
      ->add_option("--classes", s.classes,
                   "per-class IoU columns (comma-separated; default: the spec's [table] per_class, else the best "
                   "run's 10 best classes)")
      ->delimiter(',');
  s.report->add_option("--rows", s.rows, "as for `segrun table`")->delimiter(',');
  s.report->add_option("--cols", s.cols, "as for `segrun table`")->delimiter(',');
  s.report->add_option("--metric", s.metric, "as for `segrun table` (default mIoU)");
  s.report->add_option("--baseline", s.baseline, "KEY=VALUE, as for `segrun table` (repeatable)");
  s.report->add_option("--where", s.where, "KEY=VALUE, as for `segrun table` (repeatable)");
  s.report->add_option("--plot-x", s.plot_x, "swept key on the plot's x axis (default: the first row key)");
  s.report->add_option("--runs-dir", s.runs_dir, "with a spec: its runs folder (default: runs_dir / runs/<name>)")
      ->check(non_empty());
  s.report->add_option("--decimals", s.decimals, "decimals of the values")
      ->capture_default_str()
      ->check(int_range(0, 6));
}

namespace {

int run_sweep_command(const SweepOptions& s, MpiHolder&) {
  if (*s.plan || *s.status) {
    const sweeps::SweepSpec spec = sweeps::load_sweep_spec(s.spec);
    auto plan = sweeps::plan_sweep(spec, sweeps::sweep_runs_dir(spec, s.runs_dir));
    const auto fmt = sweeps::parse_table_format(s.list_format);
    if (*s.plan) {
      sweeps::mark_slurm_jobs(plan, sweeps::active_slurm_jobs(plan));
      std::cout << sweeps::format_plan(plan, fmt);
      // The plan is still shown (it is what the user asked for); `sweep run` and `submit` refuse.
      const std::vector<std::string> missing = sweeps::missing_inputs_of_plan(spec, plan);
      if (!missing.empty())
        log::warn("{}; `sweep run` and `submit` refuse this sweep until it exists",
                  sweeps::describe_missing_inputs(missing));
    } else {
      const bool spec_metric = s.status_metric.empty() && !spec.table.metric_origin.empty();
      std::cout << sweeps::format_status(plan, s.status_metric.empty() ? spec.table.metric : s.status_metric, fmt,
                                         sweeps::slurm_states_of(plan),
                                         spec_metric ? spec.table.metric_origin : "--metric");
    }
    return 0;
  }
  if (*s.run) {
    if (s.on == "slurm") {
      sweeps::SubmitRequest request;
      request.target = s.spec;
      request.runs_dir = s.runs_dir;
      request.dry_run = s.dry_run;
      if (s.max_parallel > 0) request.slurm.max_parallel = s.max_parallel;
      return sweeps::submit_sweep(request, std::cout);
    }
    const sweeps::SweepSpec spec = sweeps::load_sweep_spec(s.spec);
    sweeps::SweepRunOptions options;
    options.runs_dir = s.runs_dir;
    options.max_parallel = s.max_parallel;
    options.dry_run = s.dry_run;
    const sweeps::SweepRunSummary summary = sweeps::run_sweep(spec, options, std::cout);
    return summary.exit_code();
  }

  return *s.report ? run_report_command(s) : run_table_command(s);
}

// The table options of `segrun table` and `segrun report`: the source's defaults, then the flags.
sweeps::ResultTableOptions table_options(const SweepOptions& s, const sweeps::ReportSource& source) {
  sweeps::ResultTableOptions options = source.table;
  if (!s.rows.empty()) options.rows = s.rows;
  if (!s.cols.empty()) options.cols = s.cols;
  if (!s.rows.empty() && s.cols.empty()) options.cols.clear();
  if (!s.metric.empty()) {
    options.metric = s.metric;
    options.metric_origin = "--metric";
  }
  if (!s.baseline.empty()) {
    options.baseline = sweeps::parse_override_args(s.baseline, "--baseline");
    options.baseline_origin = "--baseline";
  }
  options.where = sweeps::parse_filter_args(s.where, "--where");
  // A runs folder's runs are compared by their resolved stores (registry.h): so are these values.
  if (source.kind == sweeps::ReportSource::Kind::kRunsDir) {
    for (auto& [key, values] : options.where)
      if (sweeps::is_store_key(key)) {
        std::set<std::string> resolved;
        for (const auto& v : values) resolved.insert(sweeps::canonical_store_value(v));
        values = resolved;
      }
    for (auto& [key, value] : options.baseline)
      if (sweeps::is_store_key(key)) value = sweeps::canonical_store_value(value);
  }
  options.decimals = s.decimals;
  return options;
}

int run_table_command(const SweepOptions& s) {
  const sweeps::ReportSource source = sweeps::load_report_source(s.source, s.runs_dir, true);
  const std::vector<sweeps::RunRecord>& runs = source.runs;
  const sweeps::ResultTableOptions options = table_options(s, source);
  std::vector<std::string> per_class = s.per_class;
  std::string per_class_origin = "--per-class";
  if (source.kind == sweeps::ReportSource::Kind::kSpec && per_class == std::vector<std::string>{"spec"}) {
    if (source.per_class.empty()) throw ConfigError("--per-class spec: " + s.source + " has no [table] per_class list");
    per_class = source.per_class;
    per_class_origin = source.per_class_origin;
  }
  const std::string format = s.format == "markdown" ? "md" : s.format;
  sweeps::ResultGrid grid;
  try {
    grid = sweeps::build_result_grid(runs, options);
  } catch (const DataError& e) {
    // "no run is done" of a spec run from another folder: say where its runs were looked for.
    if (source.kind != sweeps::ReportSource::Kind::kSpec) throw;
    throw DataError(std::string(e.what()) + " (runs folder " + source.runs_dir + ")");
  }
  sweeps::PlotOptions plot;
  plot.x_key = s.plot_x;
  plot.name = source.kind == sweeps::ReportSource::Kind::kSpec ? source.name : "";
  // A bad --plot / --plot-x (file extension, key, a file of the user's there) stops the command
  // before it prints anything.
  if (!s.plot.empty())
    sweeps::check_plot_target(
        s.plot, sweeps::render_gnuplot(grid, plot, std::filesystem::path(s.plot).filename().string()).script);
  if (!per_class.empty())
    std::cout << sweeps::format_per_class_table(runs, options, per_class, format, per_class_origin);
  if (per_class.empty()) std::cout << sweeps::format_result_grid(grid, format);
  if (!s.plot.empty()) {
    const sweeps::PlotFiles files = sweeps::write_plot(grid, plot, s.plot);
    if (files.script_kept)
      std::cerr << "wrote " << files.output << " with your edited " << files.script
                << " (kept as it is: delete it for segrun's own script; data " << files.data << ")\n";
    else
      std::cerr << "wrote " << files.output << " (gnuplot script " << files.script << ", data " << files.data << ")\n";
  }
  return 0;
}

int run_report_command(const SweepOptions& s) {
  const sweeps::ReportSource source = sweeps::load_report_source(s.source, s.runs_dir, true);
  sweeps::ReportOptions options;
  options.out = s.out;
  options.classes = s.classes;
  options.plot_x = s.plot_x;
  options.metric_given = !s.metric.empty();
  const sweeps::ReportSummary summary = sweeps::write_report(source, table_options(s, source), options);
  std::cout << "wrote " << summary.path << " (" << summary.bytes / 1024 << " KiB: " << summary.runs << " run(s), "
            << (summary.has_table ? "table, " : "") << (summary.has_plot ? "plot, " : "") << summary.curves
            << " with curves, " << summary.images << " sample image(s))\n";
  return 0;
}

}  // namespace

}  // namespace segrun::launcher
