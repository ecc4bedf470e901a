// `segrun model info CONFIG [k=v ...] [--input HxW] [--format text|json]` builds the model a config
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
  s.info->add_option("config", s.config, "experiment TOML")->required();
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

int run_model_command(const ModelOptions& s, MpiHolder&) {
  Config config = load_config(s.config, s.overrides);
  const data::Layout layout = data::parse_layout(config.data.layout);
  int64_t height = config.data.crop[0], width = config.data.crop[1];
  if (!s.input.empty()) std::tie(height, width) = parse_input_size(s.input);

  // The model train builds for a store of this layout, without pretrained weights or the text
  // encoder's class embeddings (neither changes a size or a FLOP).
  const std::vector<std::string> class_names = data::class_names(layout);
  const int num_classes = static_cast<int>(class_names.size());
  std::shared_ptr<models::SegmentorImpl> model =
      engine::build_model(config, class_names, {}, nullptr, /*with_pretrained=*/false);
  model->eval();

  const models::ParameterReport params = models::count_parameters(*model);
  torch::manual_seed(0);
  const torch::Tensor images = torch::randn({1, 3, height, width});
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  const models::FlopReport flops = models::count_flops([&] { model->predict_logits(images); }, model.get());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  auto module_flops = [&](const std::string& name) -> int64_t {
    for (const auto& item : flops.by_module)
      if (item.first == name) return item.second;
    return 0;
  };
  // Submodules: those with tensors, then any that only received FLOPs ("(input)").
  std::vector<std::string> names;
  for (const auto& g : params.groups) names.push_back(g.name);
  for (const auto& item : flops.by_module)
    if (std::find(names.begin(), names.end(), item.first) == names.end()) names.push_back(item.first);
  auto group = [&](const std::string& name) {
    for (const auto& g : params.groups)
      if (g.name == name) return g;
    return models::ModuleSize{name, 0, 0, 0};
  };
  const std::string signature = engine::model_signature(config, num_classes);

  if (s.format == "json") {
    nlohmann::ordered_json out;
    out["config"] = s.config;
    out["model"] = signature;
    out["input"] = {1, 3, height, width};
    out["params"] = {{"total", params.total.trainable + params.total.frozen},
                     {"trainable", params.total.trainable},
                     {"frozen", params.total.frozen},
                     {"buffers", params.total.buffers}};
    out["flops"] = flops.total;
    out["gflops"] = static_cast<double>(flops.total) / 1e9;
    out["submodules"] = nlohmann::ordered_json::array();
    for (const auto& name : names) {
      const models::ModuleSize g = group(name);
      out["submodules"].push_back({{"name", name},
                                   {"trainable", g.trainable},
                                   {"frozen", g.frozen},
                                   {"buffers", g.buffers},
                                   {"flops", module_flops(name)}});
    }
    out["by_op"] = nlohmann::ordered_json::array();
    for (const auto& op : flops.by_op)
      out["by_op"].push_back({{"op", op.op}, {"calls", op.calls}, {"flops", op.flops}});
    out["uncounted"] = nlohmann::ordered_json::object();
    for (const auto& item : flops.uncounted) out["uncounted"][item.first] = item.second;
    out["seconds"] = seconds;
    std::cout << out.dump(2) << std::endl;
    return 0;
  }

  std::ostream& out = std::cout;
  out << "model   " << signature << " (norm " << config.model.norm << ", " << s.config << ")\n";
  out << "input   1x3x" << height << "x" << width
      << ", eval mode; FLOPs as fvcore counts them: 1 multiply-add = 1 FLOP\n\n";
  std::vector<std::vector<std::string>> rows{
      {"submodule", "params (M)", "trainable (M)", "frozen (M)", "buffers (M)", "GFLOPs", "FLOPs %"}};
  for (const auto& name : names) {
    const models::ModuleSize g = group(name);
    const int64_t f = module_flops(name);
    rows.push_back({name, millions(g.trainable + g.frozen), millions(g.trainable), millions(g.frozen),
                    millions(g.buffers), giga(f),
                    fixed(flops.total ? 100.0 * static_cast<double>(f) / static_cast<double>(flops.total) : 0.0, 1)});
  }
  rows.push_back({"total", millions(params.total.trainable + params.total.frozen), millions(params.total.trainable),
                  millions(params.total.frozen), millions(params.total.buffers), giga(flops.total), "100.0"});
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
  out << "forward pass " << fixed(seconds, 1) << " s\n";
  return 0;
}

}  // namespace

}  // namespace segrun::launcher
