#include "launcher/data_commands.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "data/classes.h"
#include "data/inspect.h"
#include "data/pack.h"
#include "data/synth.h"
#include "dist/communicator.h"
#include "launcher/mpi_holder.h"

namespace segrun::launcher {
namespace {

// --layout ade20k | cityscapes into `layout`.
CLI::Option* add_layout_option(CLI::App* app, data::Layout& layout) {
  return app
      ->add_option_function<std::string>(
          "--layout", [&layout](const std::string& name) { layout = data::parse_layout(name); }, "ade20k | cityscapes")
      ->check(CLI::IsMember({"ade20k", "cityscapes"}))
      ->default_str("ade20k");
}

// "HxW" with 16 <= H, W <= 8192 into (height, width).
CLI::Option* add_size_option(CLI::App* app, data::SynthOptions& options) {
  return app
      ->add_option_function<std::string>(
          "--size",
          [&options](const std::string& text) {
            int h = 0, w = 0;
            char x = 0;
            std::istringstream in(text);
            if (!(in >> h >> x >> w) || (x != 'x' && x != 'X') || !in.eof() || h < 16 || w < 16 || h > 8192 ||
                w > 8192)
              throw CLI::ValidationError("--size", "'" + text + "': expected HxW with 16 <= H, W <= 8192 (e.g. 128x160)");
            options.height = h;
            options.width = w;
          },
          "image size HxW")
      ->default_str("128x128");
}

}  // namespace

struct DataCommands::State {
  CLI::App* synth = nullptr;
  CLI::App* pack = nullptr;
  CLI::App* inspect = nullptr;
  data::SynthOptions synth_options;
  data::PackOptions pack_options;
  std::string inspect_store;
  bool inspect_json = false;
  bool no_verify = false;
};

DataCommands::DataCommands(CLI::App& app) : state_(std::make_unique<State>()) {
  State& s = *state_;
  auto* data = app.add_subcommand("data", "dataset tools: synth, pack, inspect");
  data->require_subcommand(1);

  data::SynthOptions& so = s.synth_options;
  s.synth = data->add_subcommand("synth", "write a synthetic, learnable dataset in the real ADE20K/Cityscapes layout");
  add_layout_option(s.synth, so.layout);
  s.synth->add_option("--out", so.out, "output folder")->required();
  s.synth->add_option("--train", so.train, "training images")->capture_default_str()->check(CLI::Range(1, 1000000));
  s.synth->add_option("--val", so.val, "validation images")->capture_default_str()->check(CLI::Range(1, 1000000));
  add_size_option(s.synth, so);
  s.synth->add_option("--seed", so.seed, "random seed")->capture_default_str();

  data::PackOptions& po = s.pack_options;
  s.pack = data->add_subcommand("pack", "pack a real-layout folder into a sharded HDF5 store (runs on every rank of "
                                        "`segrun launch`)");
  add_layout_option(s.pack, po.layout);
  s.pack->add_option("--root", po.root, "dataset folder")->required();
  s.pack->add_option("--split", po.split, "ade20k: training | validation; cityscapes: train | val")->required();
  s.pack->add_option("--out", po.out, "store folder to create (must not exist)")->required();
  s.pack->add_option("--shards", po.shards, "number of shard files")->capture_default_str()->check(CLI::Range(1, 100000));

  s.inspect = data->add_subcommand("inspect", "summarize a store and check every record's CRC");
  s.inspect->add_option("store", s.inspect_store, "store folder or its manifest.json")->required();
  s.inspect->add_flag("--json", s.inspect_json, "print JSON");
  s.inspect->add_flag("--no-verify", s.no_verify, "skip the CRC check of every record");
}

DataCommands::~DataCommands() = default;

bool DataCommands::selected() const { return *state_->synth || *state_->pack || *state_->inspect; }

int DataCommands::run(MpiHolder& mpi) {
  State& s = *state_;
  if (*s.synth) {
    const data::SynthOptions& o = s.synth_options;
    data::synthesize(o);
    log::info("wrote synthetic {} layout to {} ({} train, {} val, {}x{})", data::layout_name(o.layout), o.out, o.train,
              o.val, o.height, o.width);
    return 0;
  }
  if (*s.pack) {
    const auto& context = mpi.context();
    init_rank_logging(context);
    auto comm = dist::make_communicator("mpi", context);
    const data::PackSummary summary = data::pack_store(s.pack_options, *comm);
    log::info("packed {} records of {}/{} into {} shard(s): {}", summary.records, s.pack_options.root,
              s.pack_options.split, summary.shards, summary.manifest);
    return 0;
  }
  const data::StoreSummary summary = data::inspect_store(s.inspect_store, !s.no_verify);
  std::cout << (s.inspect_json ? data::to_json(summary) : data::to_text(summary)) << std::flush;
  if (!s.inspect_json && summary.crc_failures.empty()) std::cout << "\n";
  return summary.crc_failures.empty() ? 0 : 1;
}

}  // namespace segrun::launcher
