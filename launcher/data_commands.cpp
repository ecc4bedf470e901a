// The dataset subcommands:
//   segrun data synth --out DIR [--layout ade20k|cityscapes] [--train N] [--val N] [--size HxW]
//   segrun data pack --root DIR --split S --out STORE [--shards N]   (on every rank of `launch`)
//   segrun data inspect STORE [--json] [--no-verify]
// synth and pack bind straight to data::SynthOptions and data::PackOptions; inspect exits 1
// when a record fails its CRC.
#include "launcher/command_group.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "core/output_paths.h"
#include "data/classes.h"
#include "data/inspect.h"
#include "data/pack.h"
#include "data/synth.h"
#include "dist/communicator.h"
#include "launcher/mpi_holder.h"

namespace segrun::launcher {
namespace {

// --layout <one of dataset_layouts()> into `layout` (ade20k by default).
CLI::Option* add_layout_option(CLI::App* app, data::Layout& layout) {
  std::vector<std::string> names;
  std::string help;
  for (const auto& [name, kind] : dataset_layouts()) {
    names.push_back(name);
    help += (help.empty() ? "" : " | ") + name;
  }
  return app
      ->add_option_function<std::string>(
          "--layout", [&layout](const std::string& name) { layout = data::parse_layout(name); }, help)
      ->check(CLI::IsMember(names))
      ->default_str(data::layout_name(data::Layout::kAde20k));
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
            if (!(in >> h >> x >> w) || (x != 'x' && x != 'X') || !in.eof() || h < 16 || w < 16 || h > 8192 || w > 8192)
              throw CLI::ValidationError("--size",
                                         "'" + text + "': expected HxW with 16 <= H, W <= 8192 (e.g. 128x160)");
            options.height = h;
            options.width = w;
          },
          "image size HxW")
      ->default_str("128x128");
}

struct DataOptions {
  data::SynthOptions synth_options;
  data::PackOptions pack_options;
  std::string inspect_store;
  bool inspect_json = false;
  bool no_verify = false;
};

int run_synth(const data::SynthOptions& o) {
  require_new_or_empty_folder("--out", o.out, "a synthetic dataset goes to a new or empty folder");
  data::synthesize(o);
  log::info("wrote synthetic {} layout to {} ({} train, {} val, {}x{})", data::layout_name(o.layout), o.out, o.train,
            o.val, o.height, o.width);
  return 0;
}

int run_pack(const data::PackOptions& o, MpiHolder& mpi) {
  const auto& context = mpi.context();
  init_rank_logging(context);
  auto comm = dist::make_communicator("mpi", context);
  const data::PackSummary summary = data::pack_store(o, *comm);
  log::info("packed {} records of {}/{} into {} shard(s): {}", summary.records, o.root, o.split, summary.shards,
            summary.manifest);
  return 0;
}

int run_inspect(const DataOptions& s) {
  const data::StoreSummary summary = data::inspect_store(s.inspect_store, !s.no_verify);
  std::cout << (s.inspect_json ? data::to_json(summary) : data::to_text(summary)) << std::flush;
  if (!s.inspect_json && summary.crc_failures.empty()) std::cout << "\n";
  return summary.crc_failures.empty() ? 0 : 1;
}

}  // namespace

void add_data_commands(CommandRegistry& registry) {
  auto options = std::make_shared<DataOptions>();  // shared by the actions, alive as long as they are
  DataOptions& s = *options;
  CLI::App& app = registry.app();
  auto* data = app.add_subcommand("data", "dataset tools: synth, pack, inspect");
  data->require_subcommand(1);

  data::SynthOptions& so = s.synth_options;
  CLI::App* synth = registry.add(
      "synth", "write a synthetic, learnable dataset in the real ADE20K/Cityscapes layout",
      [options](MpiHolder&) { return run_synth(options->synth_options); }, data);
  add_layout_option(synth, so.layout);
  synth->add_option("--out", so.out, "output folder")->required()->check(non_empty());
  synth->add_option("--train", so.train, "training images")->capture_default_str()->check(int_range(1, 1000000));
  synth->add_option("--val", so.val, "validation images")->capture_default_str()->check(int_range(1, 1000000));
  add_size_option(synth, so);
  synth->add_option("--seed", so.seed, "random seed")->capture_default_str();

  data::PackOptions& po = s.pack_options;
  CLI::App* pack = registry.add(
      "pack", "pack a real-layout folder into a sharded HDF5 store (runs on every rank of `segrun launch`)",
      [options](MpiHolder& mpi) { return run_pack(options->pack_options, mpi); }, data);
  registry.set_runs_on_ranks(pack);
  add_layout_option(pack, po.layout);
  pack->add_option("--root", po.root, "dataset folder")->required();
  pack->add_option("--split", po.split, "train | val (or training | validation: either dataset's names)")->required();
  pack->add_option("--out", po.out, "store folder to create (must not exist, or be empty)")
      ->required()
      ->check(non_empty());
  pack->add_option("--shards", po.shards, "number of shard files")->capture_default_str()->check(int_range(1, 100000));
  registry.set_preflight(pack, [options] { data::check_pack_request(options->pack_options); });

  CLI::App* inspect = registry.add(
      "inspect", "summarize a store and check every record's CRC",
      [options](MpiHolder&) { return run_inspect(*options); }, data);
  inspect->add_option("store", s.inspect_store, "store folder or its manifest.json")->required();
  inspect->add_flag("--json", s.inspect_json, "print JSON");
  inspect->add_flag("--no-verify", s.no_verify, "skip the CRC check of every record");
}

}  // namespace segrun::launcher
