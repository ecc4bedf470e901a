// `segrun model info CONFIG|RUN_DIR [k=v ...] [--input HxW] [--format text|json]` builds the model a config
// describes (random weights: model.pretrained is not read) for the classes of data.layout, counts
// its parameters (trainable, frozen, buffers; per top-level submodule) and the FLOPs of one
// inference forward pass of a 1 x 3 x H x W image (H x W = data.crop unless --input) with
// fvcore's rules (models/flop_counter.h: one multiply-add = one FLOP), and prints a table or
// JSON. No MPI: the model is built without a communicator (syncbn = plain BN).
#include "launcher/command_group.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "data/classes.h"
#include "engine/model_setup.h"
#include "engine/out_of_memory.h"
#include "launcher/train_plan.h"
#include "models/flop_counter.h"
#include "models/segmentor.h"

namespace segrun::launcher {

namespace {

struct ModelOptions {
  CLI::App* info = nullptr;
  std::string config;
  std::vector<std::string> overrides;
  std::string input;
  std::string format = "text";
};

int run_model_command(const ModelOptions& s, MpiHolder& mpi);

}  // namespace

void add_model_commands(CommandRegistry& registry) {
  auto options = std::make_shared<ModelOptions>();  // shared with the action
  ModelOptions& s = *options;
  auto* model = registry.app().add_subcommand("model", "model tools: info");
  model->require_subcommand(1);
  s.info = registry.add(
      "info", "parameters and GFLOPs of one forward pass of the model a config builds (fvcore counting)",
      [options](MpiHolder& mpi) { return run_model_command(*options, mpi); }, model);
  s.info->add_option("config", s.config, "experiment TOML, or a run folder (its config.toml)")->required();
  s.info->add_option("overrides", s.overrides, "key=value overrides, e.g. model.backbone=clip_rn101");
  s.info->add_option("--input", s.input, "input image HxW (default: data.crop; the papers use 1024x1024)");
  s.info->add_option("--format", s.format, "text | json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
}

namespace {

std::pair<int64_t, int64_t> parse_input_size(const std::string& text) {
  static const std::regex kSize(R"((\d{1,9})(?:x(\d{1,9}))?)");
  std::smatch m;
  SEGRUN_CHECK(std::regex_match(text, m, kSize), ConfigError,
               "--input: expected HxW (e.g. 1024x1024) or one size, got '" << text << "'");
  const int64_t h = std::stoll(m[1].str());
  const int64_t w = m[2].matched ? std::stoll(m[2].str()) : h;
  SEGRUN_CHECK(h >= 32 && w >= 32 && h <= 65536 && w <= 65536, ConfigError,
               "--input: sizes must be between 32 and 65536 (got " << text << ")");
  return {h, w};
}

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string pad(const std::string& text, size_t width, bool right) {
  if (text.size() >= width) return text;
  const std::string fill(width - text.size(), ' ');
  return right ? fill + text : text + fill;
}

// Rows of cells, first column left-aligned, the others right-aligned, two spaces apart.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) {
      if (widths.size() <= c) widths.push_back(0);
      widths[c] = std::max(widths[c], row[c].size());
    }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) line += (c ? "  " : "") + pad(row[c], widths[c], c > 0);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

std::string millions(int64_t n) { return fixed(static_cast<double>(n) / 1e6, 2); }
std::string giga(int64_t n) { return fixed(static_cast<double>(n) / 1e9, 2); }

// What `segrun model` reports: the model's parameters by submodule and the FLOPs of one forward
// pass at the input size.
struct ModelReport {
  std::string signature;
  int64_t height = 0, width = 0;
  models::ParameterReport params;
  models::FlopReport flops;
  double seconds = 0;              // the counted forward pass
  std::vector<std::string> names;  // submodules: those with tensors, then any with FLOPs only ("(input)")

  int64_t module_flops(const std::string& name) const {
    for (const auto& item : flops.by_module)
      if (item.first == name) return item.second;
    return 0;
  }
  models::ModuleSize group(const std::string& name) const {
    for (const auto& g : params.groups)
      if (g.name == name) return g;
    return models::ModuleSize{name, 0, 0, 0};
  }
};

ModelReport measure_model(const Config& config, const ModelOptions& s) {
  ModelReport report;
  const data::Layout layout = data::parse_layout(config.data.layout);
  report.height = config.data.crop[0];
  report.width = config.data.crop[1];
  if (!s.input.empty()) std::tie(report.height, report.width) = parse_input_size(s.input);

  // The model train builds for a store of this layout, without pretrained weights or the text
  // encoder's class embeddings (neither changes a size or a FLOP).
  const std::vector<std::string> class_names = data::class_names(layout);
  std::shared_ptr<models::SegmentorImpl> model =
      engine::build_model(config, class_names, {}, nullptr, /*with_pretrained=*/false);
  model->eval();
  report.signature = engine::model_signature(config, static_cast<int>(class_names.size()));

  report.params = models::count_parameters(*model);
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  try {
    const torch::Tensor images = torch::randn({1, 3, report.height, report.width});
    report.flops = models::count_flops([&] { model->predict_logits(images); }, model.get());
  } catch (const c10::Error& e) {
    if (!engine::is_out_of_memory(e)) throw;
    throw engine::out_of_memory_error(engine::MemoryPhase::kMeasuring,
                                      "a forward pass of a 1x3x" + std::to_string(report.height) + "x" +
                                          std::to_string(report.width) + " image (--input)",
                                      config, torch::Device(torch::kCPU), e.what_without_backtrace());
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (const auto& g : report.params.groups) report.names.push_back(g.name);
  for (const auto& item : report.flops.by_module)
    if (std::find(report.names.begin(), report.names.end(), item.first) == report.names.end())
      report.names.push_back(item.first);
  return report;
}

void print_model_json(const ModelReport& r, const ModelOptions& s) {
  nlohmann::ordered_json out;
  out["config"] = s.config;
  out["model"] = r.signature;
  out["input"] = {1, 3, r.height, r.width};
  out["params"] = {{"total", r.params.total.trainable + r.params.total.frozen},
                   {"trainable", r.params.total.trainable},
                   {"frozen", r.params.total.frozen},
                   {"buffers", r.params.total.buffers}};
  out["flops"] = r.flops.total;
  out["gflops"] = static_cast<double>(r.flops.total) / 1e9;
  out["submodules"] = nlohmann::ordered_json::array();
  for (const auto& name : r.names) {
    const models::ModuleSize g = r.group(name);
    out["submodules"].push_back({{"name", name},
                                 {"trainable", g.trainable},
                                 {"frozen", g.frozen},
                                 {"buffers", g.buffers},
                                 {"flops", r.module_flops(name)}});
  }
  out["by_op"] = nlohmann::ordered_json::array();
  for (const auto& op : r.flops.by_op)
    out["by_op"].push_back({{"op", op.op}, {"calls", op.calls}, {"flops", op.flops}});
  out["uncounted"] = nlohmann::ordered_json::object();
  for (const auto& item : r.flops.uncounted) out["uncounted"][item.first] = item.second;
  out["seconds"] = r.seconds;
  std::cout << out.dump(2) << std::endl;
}

void print_model_tables(const ModelReport& r, const Config& config, const ModelOptions& s) {
  std::ostream& out = std::cout;
  const models::FlopReport& flops = r.flops;
  out << "model   " << r.signature << " (norm " << config.model.norm << ", " << s.config << ")\n";
  out << "input   1x3x" << r.height << "x" << r.width
      << ", eval mode; FLOPs as fvcore counts them: 1 multiply-add = 1 FLOP\n\n";
  std::vector<std::vector<std::string>> rows{
      {"submodule", "params (M)", "trainable (M)", "frozen (M)", "buffers (M)", "GFLOPs", "FLOPs %"}};
  for (const auto& name : r.names) {
    const models::ModuleSize g = r.group(name);
    const int64_t f = r.module_flops(name);
    rows.push_back({name, millions(g.trainable + g.frozen), millions(g.trainable), millions(g.frozen),
                    millions(g.buffers), giga(f),
                    fixed(flops.total ? 100.0 * static_cast<double>(f) / static_cast<double>(flops.total) : 0.0, 1)});
  }
  const models::ModuleSize& total = r.params.total;
  rows.push_back({"total", millions(total.trainable + total.frozen), millions(total.trainable), millions(total.frozen),
                  millions(total.buffers), giga(flops.total), "100.0"});
  print_table(out, rows);

  out << "\n";
  std::vector<std::vector<std::string>> ops{{"op", "calls", "GFLOPs", "FLOPs %"}};
  for (const auto& op : flops.by_op)
    ops.push_back({op.op, std::to_string(op.calls), giga(op.flops),
                   fixed(100.0 * static_cast<double>(op.flops) / static_cast<double>(flops.total), 1)});
  print_table(out, ops);

  std::ostringstream free_ops;
  int64_t free_calls = 0;
  for (const auto& item : flops.uncounted) {
    free_ops << (free_ops.tellp() > 0 ? ", " : "") << item.first << " x" << item.second;
    free_calls += item.second;
  }
  out << "\nnot counted (free in fvcore's rules): " << free_calls << " calls: " << free_ops.str() << "\n";
  out << "forward pass " << fixed(r.seconds, 1) << " s\n";
}

int run_model_command(const ModelOptions& s, MpiHolder&) {
  const Config config = load_config(run_source(s.config, "").config_path, s.overrides);
  const ModelReport report = measure_model(config, s);
  if (s.format == "json")
    print_model_json(report, s);
  else
    print_model_tables(report, config, s);
  return 0;
}

}  // namespace

}  // namespace segrun::launcher
