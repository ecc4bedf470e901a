#include "data/pack.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <system_error>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/file_scan.h"
#include "core/progress.h"
#include "core/log.h"
#include "core/output_paths.h"
#include "data/manifest.h"
#include "data/release_folders.h"
#include "data/store.h"
#include "data/transforms.h"
#include "dist/communicator.h"

namespace segrun::data {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void require_dir(const fs::path& dir, const std::string& what) {
  SEGRUN_CHECK(fs::is_directory(dir), DataError, dir.string() << ": missing " << what << " folder");
}

// The --root the user gave: a folder that is not there is a command-line error (exit 2); a folder
// below it that is missing is a problem of the dataset (require_dir). A root of the other layout's
// folders is a --layout the user did not give (the default is ade20k): said so, exit 2.
void require_root(const fs::path& root, Layout layout) {
  SEGRUN_CHECK(fs::is_directory(root), ConfigError, "--root " << root.string() << ": missing dataset root folder");
  const std::optional<Layout> released = released_layout_of(root);
  SEGRUN_CHECK(!released || *released == layout, ConfigError,
               "--root " << root.string()
                         << (*released == Layout::kCityscapes ? ": a Cityscapes folder (leftImg8bit/, gtFine/)"
                                                              : ": an ADE20K folder (images/, annotations/)")
                         << ": pack it with --layout " << layout_name(*released));
}

// Sorts a scan by image path and checks that it is not empty, that every image has its annotation
// and that no two images share a name (the same rules for every layout). The annotation files
// below `annotations` (names ending in `annotation_suffix`) that no image took are left out with
// a warning that counts them: a city whose images were not extracted, an image in a format the
// scan does not read (.webp) would otherwise change the split without a word.
std::vector<SourceRecord> sorted_and_checked(std::vector<SourceRecord> out, const fs::path& images,
                                             const fs::path& annotations, const std::string& annotation_suffix) {
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.image < b.image; });
  std::map<std::string, const SourceRecord*> by_name;  // X.jpg and X.png would both take X.png's labels
  for (const auto& r : out) {
    SEGRUN_CHECK(fs::is_regular_file(r.annotation), DataError,
                 r.image << ": image without annotation (expected " << r.annotation << ")");
    const auto [seen, inserted] = by_name.emplace(r.name, &r);
    SEGRUN_CHECK(inserted, DataError,
                 seen->second->image << " and " << r.image << " share the name '" << r.name << "' (and one annotation, "
                                     << r.annotation << "): keep one of them");
  }
  SEGRUN_CHECK(!out.empty(), DataError, images.string() << ": no images found");
  std::set<fs::path> taken;
  for (const auto& r : out) taken.insert(fs::path(r.annotation).lexically_normal());
  int64_t without_image = 0;
  fs::path first;
  for (const fs::path& path : files_in(annotations, /*recursive=*/true)) {
    if (!ends_with(lower(path.filename().string()), annotation_suffix) || taken.count(path.lexically_normal()))
      continue;
    if (without_image++ == 0) first = path;
  }
  if (without_image > 0)
    log::warn("{}: {} annotation(s) have no image and are left out (the first: {})", annotations.string(),
              without_image, first.string());
  return out;
}

// The folder of a split in a layout: every layout accepts either dataset's names (training /
// train, validation / val), so one pack command line works for all.
const std::string& split_folder(const std::string& split, const LayoutInfo& layout) {
  if (split == "training" || split == "train") return layout.train_folder;
  if (split == "validation" || split == "val") return layout.val_folder;
  SEGRUN_THROW(ConfigError, "--split " << split << ": unknown " << layout.name
                                       << " split (valid: train, val, training, validation)");
}

// <root>[/ADEChallengeData2016]/{images,annotations}/<dir>/[<sub>/]<name>.{jpg,png}: subfolders
// are searched as mmseg's scan does, the annotation at the same place below annotations/<dir>.
std::vector<SourceRecord> scan_ade(const std::string& root, const std::string& dir) {
  fs::path base(root);
  require_root(base, Layout::kAde20k);
  if (fs::is_directory(base / "ADEChallengeData2016")) base /= "ADEChallengeData2016";
  const fs::path images = base / "images" / dir;
  const fs::path annotations = base / "annotations" / dir;
  require_dir(images, "image");
  require_dir(annotations, "annotation");
  std::vector<SourceRecord> out;
  for (const fs::path& path : files_in(images, /*recursive=*/true)) {
    const std::string ext = lower(path.extension().string());
    if (ext != ".jpg" && ext != ".jpeg" && ext != ".png") continue;
    SourceRecord r;
    r.image = path.string();
    r.name = path.stem().string();
    const fs::path sub = path.parent_path().lexically_relative(images);
    r.annotation = (annotations / sub / (r.name + ".png")).lexically_normal().string();
    out.push_back(r);
  }
  return sorted_and_checked(std::move(out), images, annotations, ".png");
}

// <root>/leftImg8bit/<dir>/<city>/<name>_leftImg8bit.png, <root>/gtFine/<dir>/<city>/<name>_gtFine_labelIds.png
std::vector<SourceRecord> scan_cityscapes(const std::string& root, const std::string& dir) {
  const fs::path base(root);
  require_root(base, Layout::kCityscapes);
  const fs::path images = base / "leftImg8bit" / dir;
  const fs::path annotations = base / "gtFine" / dir;
  require_dir(images, "image");
  require_dir(annotations, "annotation");
  const std::string suffix = "_leftImg8bit.png";
  std::vector<SourceRecord> out;
  for (const fs::path& path : files_in(images, /*recursive=*/true)) {
    const std::string file = path.filename().string();
    if (!ends_with(file, suffix)) continue;
    SourceRecord r;
    r.image = path.string();
    r.name = file.substr(0, file.size() - suffix.size());
    const fs::path city = path.parent_path().lexically_relative(images);
    r.annotation = (annotations / city / (r.name + "_gtFine_labelIds.png")).string();
    out.push_back(r);
  }
  return sorted_and_checked(std::move(out), images, annotations, "_gtfine_labelids.png");
}

cv::Mat decode(const std::vector<uint8_t>& bytes, int flags) {
  try {
    return cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8U, const_cast<uint8_t*>(bytes.data())), flags);
  } catch (const cv::Exception&) {
    return cv::Mat();
  }
}

// Reads, checks and maps one source record.
RecordInput make_record(Layout layout, const SourceRecord& src) {
  RecordInput r;
  r.name = src.name;
  r.image_bytes = read_bytes(src.image);
  SEGRUN_CHECK(!r.image_bytes.empty(), DataError, src.image << ": empty image file");
  cv::Mat image = decode(r.image_bytes, cv::IMREAD_COLOR);
  SEGRUN_CHECK(!image.empty(), DataError, src.image << ": cannot decode image (corrupt or not an image)");
  const cv::Mat raw = decode_label(read_bytes(src.annotation), src.annotation);
  SEGRUN_CHECK(raw.rows == image.rows && raw.cols == image.cols, DataError,
               src.annotation << ": label is " << raw.rows << "x" << raw.cols << " (HxW) but the image is "
                              << image.rows << "x" << image.cols);
  const auto& lut = label_lut(layout);
  const int k = num_classes(layout);
  cv::Mat mapped(raw.rows, raw.cols, CV_8U);
  r.presence.assign(static_cast<size_t>(k), 0);
  for (int y = 0; y < raw.rows; ++y) {
    const uint8_t* in = raw.ptr<uint8_t>(y);
    uint8_t* out = mapped.ptr<uint8_t>(y);
    for (int x = 0; x < raw.cols; ++x) {
      const int v = lut[in[x]];
      SEGRUN_CHECK(
          v != kInvalidLabel, DataError,
          src.annotation << ": label value " << static_cast<int>(in[x]) << " outside 0.." << max_raw_label(layout));
      out[x] = static_cast<uint8_t>(v);
      if (v < k) r.presence[static_cast<size_t>(v)] = 1;
    }
  }
  std::vector<uchar> png;
  SEGRUN_CHECK(cv::imencode(".png", mapped, png), DataError, src.annotation << ": cannot re-encode label");
  r.label_bytes.assign(png.begin(), png.end());
  r.height = static_cast<uint32_t>(image.rows);
  r.width = static_cast<uint32_t>(image.cols);
  return r;
}

// Every rank learns whether any rank failed; the failing rank rethrows its own error, of its own
// type (a ConfigError stays one: exit 2).
void agree_on_failure(dist::Communicator& comm, const std::exception_ptr& local_error, const std::string& where) {
  torch::Tensor flag = torch::tensor({static_cast<int64_t>(local_error ? 1 : 0)}, torch::kLong);
  comm.allreduce(flag);
  if (local_error) std::rethrow_exception(local_error);
  SEGRUN_CHECK(flag.item<int64_t>() == 0, DataError,
               where << ": packing failed on another rank (its error line says why)");
}

// Whether `name` is a file pack writes into its staging folder: a shard, the manifest, or the
// temp file of either ("<name>.tmp-<pid>", core/atomic_file.h and data/store.h).
bool is_pack_file_name(const std::string& name) {
  static const std::regex kPackFile(R"((shard-[0-9]+-of-[0-9]+\.h5|manifest\.json)(\.tmp-[0-9]+)?)");
  return std::regex_match(name, kPackFile);
}

fs::path staging_path(const fs::path& out) {
  const fs::path clean = out.lexically_normal();
  const fs::path name = clean.has_filename() ? clean.filename() : clean.parent_path().filename();
  const fs::path parent = clean.has_filename() ? clean.parent_path() : clean.parent_path().parent_path();
  return parent / ("." + name.string() + ".packing");
}

// Stages 2 and 3 of pack_store: this rank's shards, then (rank 0) the manifest, into `dir`.
PackSummary pack_into(const PackOptions& o, const std::vector<SourceRecord>& records, const fs::path& dir,
                      dist::Communicator& comm) {
  const int rank = comm.rank(), world = comm.size();
  const int k = num_classes(o.layout);
  std::string error;
  // 2. This rank's shards.
  const int64_t n = static_cast<int64_t>(records.size());
  auto shard_begin = [&](int s) { return n * s / o.shards; };
  std::vector<int64_t> totals(1 + static_cast<size_t>(k) * k, 0);  // [0] unused, then K x K
  int64_t mine = 0;                                                // records of this rank's shards
  for (int s = rank; s < o.shards; s += world) mine += shard_begin(s + 1) - shard_begin(s);
  Progress progress("pack: rank 0's shards", mine, "records", rank == 0);
  try {
    for (int s = rank; s < o.shards; s += world) {
      const std::string path = (dir / shard_file_name(s, o.shards)).string();
      ShardHeader header;
      header.dataset = layout_name(o.layout);
      header.split = o.split;
      header.class_names = class_names(o.layout);
      header.label_mapping = mapping_name(o.layout);
      header.shard_index = s;
      header.num_shards = o.shards;
      StoreWriter writer(path, header);
      for (int64_t i = shard_begin(s); i < shard_begin(s + 1); ++i) {
        RecordInput r = make_record(o.layout, records[static_cast<size_t>(i)]);
        for (int a = 0; a < k; ++a) {
          if (!r.presence[a]) continue;
          for (int b = 0; b < k; ++b) {
            if (r.presence[b]) ++totals[1 + static_cast<size_t>(a) * k + b];
          }
        }
        writer.append(r);
        progress.advance();
      }
      writer.commit();
      log::info("pack: wrote {} ({} records)", path, writer.size());
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  torch::Tensor combined = torch::from_blob(totals.data(), {static_cast<int64_t>(totals.size())}, torch::kLong).clone();
  combined[0] = error.empty() ? 0 : 1;
  comm.allreduce(combined);
  if (!error.empty()) throw DataError(error);
  SEGRUN_CHECK(combined[0].item<int64_t>() == 0, DataError,
               o.out << ": packing failed on another rank (its error line says why)");

  // 3. Rank 0 writes the manifest once every shard is committed.
  Manifest m;
  m.dataset = layout_name(o.layout);
  m.split = o.split;
  m.num_classes = k;
  m.ignore_index = kIgnoreIndex;
  m.class_names = class_names(o.layout);
  m.label_mapping = mapping_name(o.layout);
  m.records = n;
  for (int s = 0; s < o.shards; ++s)
    m.shards.push_back({shard_file_name(s, o.shards), shard_begin(s + 1) - shard_begin(s)});
  const int64_t* c = combined.data_ptr<int64_t>();
  m.cooccurrence.assign(c + 1, c + 1 + static_cast<int64_t>(k) * k);
  comm.barrier();
  PackSummary summary;
  summary.records = n;
  summary.shards = o.shards;
  summary.manifest = manifest_path(dir.string());
  for (int a = 0; a < k; ++a) summary.images_per_class.push_back(m.cooccurrence[static_cast<size_t>(a) * k + a]);
  std::exception_ptr manifest_error;
  if (rank == 0) {
    try {
      write_file_atomic(summary.manifest, manifest_to_json(m));
    } catch (const std::exception& e) {
      manifest_error =
          std::make_exception_ptr(DataError(summary.manifest + ": cannot write manifest (" + e.what() + ")"));
    }
  }
  agree_on_failure(comm, manifest_error, o.out);
  return summary;
}

}  // namespace

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::string s;
  try {
    s = read_file(path);
  } catch (const std::exception& e) {
    SEGRUN_THROW(DataError, path << ": cannot read file (" << e.what() << ")");
  }
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::vector<SourceRecord> scan_split(Layout layout, const std::string& root, const std::string& split) {
  const std::string& dir = split_folder(split, layout_info(layout));
  switch (layout) {
    case Layout::kAde20k: return scan_ade(root, dir);
    case Layout::kCityscapes: return scan_cityscapes(root, dir);
  }
  SEGRUN_THROW(DataError, "pack: no folder scan for dataset layout " << static_cast<int>(layout));
}

void check_pack_target(const std::string& out) {
  refuse_dangling_link("--out", out);
  const fs::path where = resolved_output_path(out);  // "new/.." is the current folder
  std::error_code ec;
  const bool exists = fs::exists(where, ec);
  SEGRUN_CHECK(!exists || (fs::is_directory(where, ec) && fs::is_empty(where, ec)), ConfigError,
               out << " already exists and is not empty; nothing there is overwritten: choose another --out");
  // The store is renamed into place at the end: onto a link, that would fail after all the work.
  SEGRUN_CHECK(!fs::is_symlink(fs::path(out).lexically_normal(), ec), ConfigError,
               out << " is a symbolic link; give the folder it points to (" << where.string() << ") as --out");
}

namespace {

// ConfigError unless the staging folder of `out` is absent or holds only files pack writes there
// (is_pack_file_name): what a killed pack leaves, which the next pack may remove.
void check_staging_folder(const std::string& out) {
  const std::string staging = staging_path(fs::path(out)).string();
  std::error_code ec;
  if (!fs::exists(staging, ec)) return;
  SEGRUN_CHECK(fs::is_directory(staging, ec), ConfigError,
               staging << ": not a folder of an interrupted pack of " << out
                       << "; nothing removed: move it away or choose another --out");
  for (const auto& entry : fs::directory_iterator(staging, ec)) {
    const std::string name = entry.path().filename().string();
    SEGRUN_CHECK(entry.is_regular_file(ec) && is_pack_file_name(name), ConfigError,
                 staging << ": holds " << name
                         << ", which `segrun data pack` does not write; nothing removed: move your files out of it "
                            "(or delete it) and pack again");
  }
  SEGRUN_CHECK(!ec, ConfigError, staging << ": cannot list (" << ec.message() << "); nothing removed");
}

}  // namespace

void check_pack_request(const PackOptions& o) {
  check_pack_target(o.out);
  split_folder(o.split, layout_info(o.layout));
  require_root(o.root, o.layout);
  check_staging_folder(o.out);
}

PackSummary pack_store(const PackOptions& o, dist::Communicator& comm) {
  SEGRUN_CHECK(o.shards >= 1, DataError, o.out << ": shards must be >= 1 (got " << o.shards << ")");
  SEGRUN_CHECK(!o.out.empty(), DataError, "pack: empty output path");
  const int rank = comm.rank();
  const fs::path out(o.out);

  // 1. Refuse an existing store and scan the sources (every rank; agree before creating anything).
  std::exception_ptr error;
  std::vector<SourceRecord> records;
  try {
    check_pack_target(o.out);
    records = scan_split(o.layout, o.root, o.split);
  } catch (const Error&) {
    error = std::current_exception();
  }
  agree_on_failure(comm, error, o.out);
  // Everything is written into a hidden staging folder beside the target, renamed into place once
  // every shard and the manifest are complete: a failed or killed pack leaves no target folder.
  // A staging folder left by a killed pack is removed, but only when it holds nothing but the
  // files pack writes there (ConfigError naming it otherwise: nothing of the user's is lost).
  const fs::path staging = staging_path(out);
  if (rank == 0) {
    try {
      std::error_code ec;
      if (fs::exists(staging, ec)) {
        check_staging_folder(o.out);
        log::warn("pack: removing {}, left by an interrupted pack", staging.string());
        fs::remove_all(staging, ec);
        SEGRUN_CHECK(!ec, DataError, staging.string() << ": cannot remove the partial store (" << ec.message() << ")");
      }
      fs::create_directories(staging, ec);
      SEGRUN_CHECK(!ec, DataError,
                   staging.string() << ": cannot create the staging directory (" << ec.message() << ")");
    } catch (const Error&) {
      error = std::current_exception();
    }
  }
  agree_on_failure(comm, error, o.out);
  try {
    PackSummary summary = pack_into(o, records, staging, comm);
    std::exception_ptr move_error;
    if (rank == 0) {
      try {
        std::error_code ec;
        fs::rename(staging, out, ec);  // replaces an empty target folder
        SEGRUN_CHECK(!ec, DataError,
                     o.out << ": cannot move the packed store into place from " << staging.string() << " ("
                           << ec.message() << ")");
      } catch (const DataError&) {
        move_error = std::current_exception();
      }
    }
    agree_on_failure(comm, move_error, o.out);
    summary.manifest = manifest_path(o.out);
    if (rank == 0) log::info("pack: {} records in {} shard(s) -> {}", summary.records, o.shards, summary.manifest);
    return summary;
  } catch (const DataError& e) {
    if (rank == 0) {
      std::error_code ec;
      fs::remove_all(staging, ec);
    }
    throw DataError(std::string(e.what()) + " (" + o.out + " was not created)");
  }
}

}  // namespace segrun::data
