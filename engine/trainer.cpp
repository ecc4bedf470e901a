#include "engine/trainer.h"

#include <algorithm>
#include <iterator>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/launcher_watch.h"
#include "core/output_paths.h"
#include "core/run_folder.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/stop_request.h"
#include "data/loader.h"
#include "data/store.h"
#include "dist/communicator.h"
#include "dist/grad_sync.h"
#include "engine/checkpoint.h"
#include "engine/evaluator.h"
#include "engine/label_io.h"
#include "engine/lr_schedule.h"
#include "engine/model_setup.h"
#include "engine/optimizer.h"
#include "engine/out_of_memory.h"
#include "engine/precision.h"
#include "engine/tensorboard_writer.h"
#include "models/segmentor.h"

namespace segrun::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Whether `path` is a config that resolves to `config` (a resume under the run's own config.toml):
// then it stays as it is, with whatever notes its owner wrote in it.
bool same_config_on_disk(const std::string& path, const Config& config) {
  if (!path_exists(path)) return false;
  try {
    return to_toml(load_config(path)) == to_toml(config);
  } catch (const ConfigError&) {
    return false;
  }
}

// Validation pictures kept per evaluation (rank 0's first records), at most kPictureHeight pixels
// high: enough to judge a run by eye, small enough for TensorBoard and the report.
constexpr int64_t kValPictures = 4;
constexpr int kPictureHeight = 256;

// Writes the pictures as samples/iter_<iter>/<name>.png and as TensorBoard images val/<name>.
void save_pictures(const std::vector<PredictionPicture>& pictures, int64_t iter, const std::string& samples_dir,
                   TensorBoardWriter& board) {
  if (pictures.empty()) return;
  const std::string dir = samples_dir + "/iter_" + std::to_string(iter);
  std::filesystem::create_directories(dir);
  for (const PredictionPicture& picture : pictures) {
    cv::Mat panel = picture.panel;
    if (panel.rows > kPictureHeight) {
      const int width = std::max(1, static_cast<int>(std::lround(panel.cols * double(kPictureHeight) / panel.rows)));
      cv::resize(panel, panel, cv::Size(width, kPictureHeight), 0, 0, cv::INTER_NEAREST);
    }
    std::vector<uint8_t> png;
    if (!cv::imencode(".png", panel, png)) throw IoError(dir + "/" + picture.name + ".png: cannot encode");
    write_file_atomic(dir + "/" + picture.name + ".png", std::string(png.begin(), png.end()));
    board.add_png("val/" + picture.name, png, panel.cols, panel.rows, 3, iter);
  }
}

// How the gradients are synchronized, for the first log line ("" without overlap).
const char* overlap_phrase(const dist::GradientSync& sync) {
  if (!sync.overlapping()) return "";
  return sync.launches_from_backward() ? " (gradient buckets all-reduced during backward, started by backward)"
                                       : " (gradient buckets all-reduced during backward by a communication thread)";
}

// Adds each loss part of `from` to the part of the same name in `into` (a part new to `into` is
// appended), so that a window reopened from a checkpoint of a model with other parts never logs
// one part's values under another's name. `into`'s parts stay in their first-seen order.
void add_parts(std::vector<std::pair<std::string, torch::Tensor>>& into,
               const std::vector<std::pair<std::string, torch::Tensor>>& from) {
  for (const auto& [name, value] : from) {
    auto it = std::find_if(into.begin(), into.end(), [&](const auto& part) { return part.first == name; });
    if (it == into.end()) {
      into.emplace_back(name, torch::zeros_like(value));
      it = std::prev(into.end());
    }
    it->second += value;
  }
}

}  // namespace

// Everything one run holds. Members set by set_up() / resume() are null before.
struct Trainer::State {
  State(const Config& c, const dist::RankContext& rc, TrainRequest r)
      : config(c), launched_context(rc), request(std::move(r)), run(request.run_dir), root(rc.is_root()) {}

  const Config config;
  const dist::RankContext launched_context;  // as MPI started the rank; `context` once placed
  const TrainRequest request;
  RunFolder run;
  const bool root;
  Clock::time_point started = Clock::now();
  double seconds_before = 0;  // the training time the resumed checkpoint records (its earlier starts)
  LauncherWatch launcher;     // the local launcher (segrun launch, sweep run) that started the ranks, if any
  std::vector<std::string> resume_candidates;  // tried in order (auto: newest first)
  std::vector<ConfigChange> resume_changes;    // keys the resume changes that may change
  bool had_status = false;                     // the run folder had a status file before this run
  bool began = false;                          // resume() succeeded: config.toml and status "running" written
  bool already_done = false;                   // --resume auto of a finished run: nothing to do
  std::optional<FolderLock> lock;              // rank 0: this process trains the run (set_up)
  TrainOutcome outcome;

  // set_up()
  dist::RankContext context;
  torch::Device device = torch::kCPU;
  std::shared_ptr<dist::Communicator> comm;
  // Host-side agreement (the stop flag, the logged loss means) over MPI, so that it never waits
  // for the GPU's queue the way an NCCL collective on a host tensor would.
  std::shared_ptr<dist::Communicator> control;
  Precision precision = Precision::kFp32;
  std::unique_ptr<LossScaler> scaler;
  std::shared_ptr<data::StoreReader> store;
  std::shared_ptr<data::StoreReader> val_store;
  std::shared_ptr<models::SegmentorImpl> model;
  std::unique_ptr<MultiTensorAdamW> optimizer;
  std::string signature;
  int64_t global_batch = 0;
  std::unique_ptr<TensorBoardWriter> board;  // rank 0

  // resume()
  std::unique_ptr<dist::GradientSync> grad_sync;
  std::unique_ptr<data::TrainLoader> loader;

  // The log window: iterations since the last log line. The total and each loss part are summed
  // on the device and read once per log line (and before a checkpoint), so that no iteration
  // waits for the GPU to report its loss.
  Clock::time_point window_start = Clock::now();
  int64_t window_iters = 0;
  int64_t window_timed = 0;    // of those, the steps this process took since window_start (speed)
  int64_t window_skipped = 0;  // fp16 steps skipped for inf/nan gradients
  int64_t window_first = 0;
  torch::Tensor window_total;
  std::vector<std::pair<std::string, torch::Tensor>> window_parts;
  // Sum of the steps' gradient norms before clipping (train.grad_clip > 0 only).
  torch::Tensor window_grad_norm;
  double window_wait = 0;        // seconds this rank waited for data
  double window_sync_wait = 0;   // seconds backward's end waited for gradient all-reduces
  double lr = 0;                 // of the last step
  int64_t skipped_reported = 0;  // corrupt records already reported
  BestValidation best;           // under train.save_best; restored by resume()
  int64_t saved_iter = -1;       // the iteration of the checkpoint this process wrote last

  // The run's wall time so far: this start's and that of the starts before the resumed checkpoint
  // (a preempted run's result counts every start, not the last one alone).
  double training_seconds() const {
    return seconds_before + std::chrono::duration<double>(Clock::now() - started).count();
  }

  // What a checkpoint of the model after `next_iter` iterations records besides the tensors.
  CheckpointMeta checkpoint_meta(int64_t next_iter) const {
    CheckpointMeta meta{next_iter, config.train.seed, context.world_size, signature};
    meta.seconds = training_seconds();
    if (scaler->enabled()) {
      meta.loss_scale = scaler->current_scale();
      meta.loss_scale_growth = scaler->growth_tracker();
    }
    meta.best = best;
    return meta;
  }

  // train.save_best: offers the validation after `iter` iterations; rank 0 writes best.pt when it
  // is the best so far. Every rank holds the same metrics (the evaluation all-reduces them), so
  // every rank's `best` stays the same without a collective.
  void offer_best(const SegMetrics& m, int64_t iter) {
    const std::string& metric = config.train.save_best;
    if (metric == "none") return;
    const double value = metric == "mIoU" ? m.mIoU : metric == "mAcc" ? m.mAcc : m.aAcc;
    const BestValidation before = best;
    if (!best.offer(metric, value, iter) || !root) return;
    const std::string path = save_best_checkpoint(run.checkpoint_dir(), checkpoint_meta(iter), *model, *optimizer);
    if (before.recorded() && before.metric == metric)
      log::info("iter {} val: best {} so far ({:.2f}, was {:.2f} at iteration {}): {}", iter, metric, value,
                before.value, before.iter, path);
    else
      log::info("iter {} val: best {} so far ({:.2f}): {}", iter, metric, value, path);
  }

  void reset_window(int64_t first) {
    window_start = Clock::now();
    window_iters = 0;
    window_timed = 0;
    window_skipped = 0;
    window_first = first;
    if (window_total.defined()) window_total.zero_();
    for (auto& part : window_parts) part.second.zero_();
    if (window_grad_norm.defined()) window_grad_norm.zero_();
    window_wait = 0;
    window_sync_wait = 0;
  }

  // What a resume at `start_iter` changes of the run's config (what may change: check_train_request).
  void report_resume_changes(int64_t start_iter) const {
    if (!root) return;
    for (const ConfigChange& c : resume_changes) {
      if (c.key == "train.iters")
        log::warn(
            "train.iters = {} (the run started with {}): from iteration {} on, the learning-rate schedule "
            "follows the new length",
            c.after, c.before, start_iter);
      else
        log::info("resuming with {} = {} (was {})", c.key, c.after, c.before);
    }
  }

  // A resume from a checkpoint older than the run's last records (the newer ones were unreadable,
  // or --resume named an older one): metrics.jsonl forgets the records past it, which the run is
  // about to compute again, as TensorBoard's SummaryWriter(purge_step) does. `validation_too`:
  // also the validation at `iter` (a finished run evaluated again validates there once more).
  // iter < 0: every record (an earlier attempt that left no checkpoint; the run starts over).
  void forget_metrics_after(int64_t iter, bool validation_too) {
    const std::string path = run.metrics_path();
    if (!path_exists(path)) return;
    std::istringstream lines(read_file(path));
    std::string kept, line;
    int64_t dropped = 0, not_records = 0;
    while (std::getline(lines, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      // A line cut short (a crash, a full disk, a power loss) would lie inside the file once this
      // run appends after it, where every reader refuses it: it goes.
      if (!record.is_object()) {
        ++not_records;
        continue;
      }
      const int64_t at = record.value("iter", int64_t{0});
      if (at > iter || (validation_too && at == iter && record.value("mode", "") == "val")) {
        ++dropped;
        continue;
      }
      kept += line + "\n";
    }
    if (dropped == 0 && not_records == 0) return;
    write_file_atomic(path, kept);
    if (not_records > 0)
      log::warn("{}: removed {} line(s) that are no JSON record (cut short by a crash or a full disk)", path,
                not_records);
    if (dropped == 0) return;
    if (iter < 0)
      log::info("{}: forgot the {} record(s) of an earlier attempt that left no checkpoint; the run starts over", path,
                dropped);
    else
      log::info("{}: forgot {} record(s) {} iteration {}, where the run continues", path, dropped,
                validation_too ? "from the validation at" : "past", iter);
  }

  // The open log window's sums averaged over the ranks (a collective over `control`: every rank
  // calls it), for a checkpoint to carry.
  OpenLogWindow open_window() {
    OpenLogWindow window;
    if (window_iters == 0) return window;
    window.iters = window_iters;
    window.skipped = window_skipped;
    window.first = window_first;
    std::vector<double> sums{window_total.defined() ? window_total.item<double>() : 0.0};
    for (const auto& part : window_parts) sums.push_back(part.second.item<double>());
    window.has_grad_norm = window_grad_norm.defined();
    if (window.has_grad_norm) sums.push_back(window_grad_norm.item<double>());
    torch::Tensor mean = torch::tensor(sums, torch::kFloat64);
    control->allreduce(mean);
    mean = mean / static_cast<double>(context.world_size);
    window.total = mean[0].item<double>();
    for (size_t i = 0; i < window_parts.size(); ++i)
      window.parts.emplace_back(window_parts[i].first, mean[static_cast<int64_t>(i + 1)].item<double>());
    if (window.has_grad_norm) window.grad_norm = mean[mean.size(0) - 1].item<double>();
    return window;
  }

  // Continues the log window a checkpoint carried (every rank holds the ranks' average, so the
  // log line's average over the ranks is unchanged).
  void reopen_window(const OpenLogWindow& window) {
    if (window.iters == 0) return;
    const auto on_device = torch::TensorOptions().dtype(torch::kFloat64).device(device);
    window_iters = window.iters;
    window_skipped = window.skipped;
    window_first = window.first;
    window_total = torch::tensor(window.total, on_device);
    window_parts.clear();
    for (const auto& [name, sum] : window.parts) window_parts.emplace_back(name, torch::tensor(sum, on_device));
    if (window.has_grad_norm) window_grad_norm = torch::tensor(window.grad_norm, on_device);
  }

  // A non-finite loss (fp32/bf16; fp16 skips such steps) ends the run before a checkpoint or a
  // log line could carry it.
  void check_window_finite(int64_t last_iter) const {
    if (!window_total.defined() || scaler->enabled()) return;
    const double total = window_total.item<double>();
    if (!std::isfinite(total))
      throw Error("iterations " + std::to_string(window_first) + "-" + std::to_string(last_iter) + ": loss is " +
                  std::to_string(total) + " on rank " + std::to_string(context.world_rank) +
                  "; lower train.lr or set train.grad_clip");
  }

  // Where a resume continues: the first of resume_candidates that loads (--resume auto falls back
  // past an unreadable one), checked against the run (train.iters, world size), with the log
  // window it interrupted; abandoned_after >= 0 when the resume starts a new line of training
  // (back to an older checkpoint, or train.iters changed): the old line's records past it are not
  // this one's. Without a checkpoint to resume: iteration 0.
  struct ResumePoint {
    int64_t start_iter = 0;
    OpenLogWindow carried_window;
    int64_t abandoned_after = -1;
  };
  ResumePoint load_resume_point();
  // Rank 0's part of (re)starting the run folder at start_iter: metrics and checkpoints of an
  // abandoned line set aside, config.toml, status "running", TensorBoard.
  void begin_run_folder(int64_t start_iter, int64_t abandoned_after);

  // One micro-batch of step `iter`: the next batch, forward, loss / `micro_batches`, backward.
  // Returns that weighted loss and its parts, detached, in float64.
  models::LossTerms forward_backward(int64_t iter, int micro_batches) {
    const auto wait_start = Clock::now();
    data::Batch batch = loader->next();
    window_wait += std::chrono::duration<double>(Clock::now() - wait_start).count();
    // Pinned host batches (see TrainLoader) copy to the GPU asynchronously; the uint8 labels
    // become the models' int64 there.
    const torch::Tensor images = batch.images.to(device, /*non_blocking=*/true);
    const torch::Tensor labels = batch.labels.to(device, /*non_blocking=*/true).to(torch::kLong);
    // Every draw of the model (dropout, batch drop, point sampling) is keyed by (seed, iteration,
    // the sample's global position): the same on any number of ranks and micro-batches.
    std::vector<uint64_t> sample_keys;
    for (int64_t position : batch.positions)
      sample_keys.push_back(hash_key(config.train.seed, static_cast<uint64_t>(iter), static_cast<uint64_t>(position),
                                     static_cast<uint64_t>(RngPurpose::kModel)));
    model->set_sample_keys(std::move(sample_keys));
    models::LossTerms loss;
    {
      AutocastScope autocast(device, precision);
      loss = model->loss(images, labels);
    }
    model->set_sample_keys({});
    const auto weighted = [&](const torch::Tensor& t) { return micro_batches == 1 ? t : t / micro_batches; };
    scaler->scale(weighted(loss.total)).backward();
    models::LossTerms detached;
    detached.total = weighted(loss.total.detach().to(torch::kFloat64));
    for (const auto& part : loss.parts)
      detached.parts.emplace_back(part.first, weighted(part.second.detach().to(torch::kFloat64)));
    return detached;
  }
};

Trainer::Trainer(const Config& config, const dist::RankContext& context, TrainRequest request)
    : state_(std::make_unique<State>(config, context, std::move(request))) {
  State& s = *state_;
  // Rank 0 alone checks the run folder: the others could see it half made by rank 0's set_up().
  s.resume_changes = check_train_request(config, s.request, /*check_run_folder=*/s.root);
  if (s.root) check_run_not_busy(s.request.run_dir);  // the other ranks may start after rank 0 took it
  process::preemption_signal(config.cluster.slurm.signal);
  s.had_status = path_exists(s.run.status_path());
  if (s.request.resume == "auto")
    s.resume_candidates = checkpoints_newest_first(s.run.checkpoint_dir());
  else if (!s.request.resume.empty())
    s.resume_candidates = {s.request.resume};
  // A finished run whose newest checkpoint is at train.iters has nothing to train (a larger
  // train.iters continues it). A status file that names no state is not "done", and a run marked
  // done without its result.json (deleted, or lost in a copy) is evaluated again from that checkpoint.
  const auto says_done = [&s] {
    try {
      return s.run.read_status().state == RunState::kDone;
    } catch (const DataError&) {
      return false;
    }
  };
  const bool finished =
      s.request.resume == "auto" && !s.resume_candidates.empty() &&
      fs::path(s.resume_candidates.front()).filename() == "iter_" + std::to_string(config.train.iters) + ".pt" &&
      s.had_status && says_done();
  const bool has_result = path_exists(s.run.result_path());
  const std::string result_problem = s.run.result_problem();
  s.already_done = finished && has_result && result_problem.empty();
  if (finished && !s.already_done && s.root) {
    if (has_result)
      log::warn("{} is done but {}: evaluating its final checkpoint again (the file is set aside)", s.request.run_dir,
                result_problem);
    else
      log::warn("{} is done but has no result.json: evaluating its final checkpoint again", s.request.run_dir);
  }
}

Trainer::~Trainer() = default;

void Trainer::set_up() {
  State& s = *state_;
  const Config& config = s.config;
  s.run.create();
  // Before anything is written into the run, its logs included.
  if (s.root) s.lock = take_run_lock(s.request.run_dir);
  log::LogOptions log_options;
  log_options.rank = s.launched_context.world_rank;
  log_options.world = s.launched_context.world_size;
  log_options.dir = s.run.log_dir();
  log_options.level = config.log.level;
  log::init_logging(log_options);
  if (s.root) {
    if (int stale = remove_stale_temp_files(s.run.checkpoint_dir()))
      log::warn("removed {} partial checkpoint file(s) left by an interrupted write", stale);
  }
  process::install_stop_handlers(process::preemption_signal(config.cluster.slurm.signal));

  const DeviceSetup setup = setup_device(config, s.launched_context);
  s.context = setup.context;
  s.device = setup.device;
  s.comm = setup.comm;
  s.control = s.comm;
  if (s.comm->backend_name() != "mpi") {
    dist::CommunicatorOptions control_options;
    control_options.timeout_s = config.dist.timeout_s;
    control_options.name = "control";
    s.control = dist::make_communicator("mpi", s.context, control_options);
  }
  s.precision = parse_precision(config.train.precision, s.device);  // math modes: setup_device
  s.scaler = std::make_unique<LossScaler>(s.precision == Precision::kFp16);
  s.store = std::make_shared<data::StoreReader>(config.data.store);
  check_store_matches(*s.store, config.data.store, config);
  if (!config.data.val_store.empty()) {
    s.val_store = std::make_shared<data::StoreReader>(config.data.val_store);
    check_store_matches(*s.val_store, config.data.val_store, config);
    // Legal (a smoke test), but a table of such a run would not read as a validation mIoU.
    if (s.root && resolved_store_folder(config.data.store) == resolved_store_folder(config.data.val_store))
      log::warn("data.val_store is data.store ({}): the validation mIoU is measured on the training images",
                config.data.store);
  }
  const auto is_validation_split = [](const std::string& split) { return split == "validation" || split == "val"; };
  if (s.root && is_validation_split(s.store->split()))
    log::warn("data.store {} was packed from the '{}' split: the run trains on validation images", config.data.store,
              s.store->split());
  const int num_classes = s.store->num_classes();
  s.outcome.class_names = s.store->class_names();

  torch::manual_seed(hash_key(config.train.seed, 0, 0, static_cast<uint64_t>(RngPurpose::kInit)));
  s.model = build_model(config, *s.store, s.comm);
  s.model->to(s.device);
  dist::broadcast_module_state(*s.model, *s.comm);
  s.optimizer = make_optimizer(*s.model, config.train);
  for (const ParameterGroup& g : parameter_groups(*s.model, config.train))
    log::info("optimizer group {}: {} tensors, lr x{:g}, weight decay {:g}", g.name, g.parameters.size(), g.lr_mult,
              g.weight_decay);
  s.signature = model_signature(config, num_classes);
  validate_lr_schedule(config.train);
  if (s.root && config.train.save_best != "none" && config.train.eval_interval == 0)
    log::warn(
        "train.save_best = {} with train.eval_interval = 0: only the final validation runs, so best.pt "
        "will be the final model",
        config.train.save_best);
  s.global_batch = static_cast<int64_t>(config.data.batch_per_rank) * s.context.world_size * config.train.accumulate;
}

Trainer::State::ResumePoint Trainer::State::load_resume_point() {
  State& s = *this;
  const Config& config = s.config;
  ResumePoint point;
  for (size_t i = 0; i < s.resume_candidates.size(); ++i) {
    const std::string& resume_path = s.resume_candidates[i];
    CheckpointMeta meta;
    try {
      meta = load_checkpoint(resume_path, s.signature, *s.model, s.optimizer.get());
    } catch (const UnreadableCheckpointError& e) {
      // --resume auto falls back to the previous checkpoint; an explicit path does not.
      if (s.request.resume != "auto") throw;
      if (i + 1 == s.resume_candidates.size())
        throw UnreadableCheckpointError(
            std::string(e.what()) + "; none of the run's " + std::to_string(s.resume_candidates.size()) +
            " checkpoint(s) can be read: move " + s.run.checkpoint_dir() + " aside to train the run from its start");
      log::warn("{}; trying the previous checkpoint", e.what());
      continue;
    }
    if (meta.seed != config.train.seed)
      log::warn("resuming {} written with seed {} under train.seed = {}", resume_path, meta.seed, config.train.seed);
    SEGRUN_CHECK(meta.next_iter <= config.train.iters, ConfigError,
                 resume_path << " is at iteration " << meta.next_iter << ", past train.iters = " << config.train.iters
                             << "; resume with the run's own train.iters");
    if (meta.world_size != s.context.world_size) {
      const int64_t per_rank = static_cast<int64_t>(config.data.batch_per_rank) * config.train.accumulate;
      throw ConfigError(segrun::format(
          "{} was trained on {} rank(s) (global batch {}), this resume runs on {} (global batch {}): a run "
          "continues only at its global batch; resume it on {} rank(s): segrun launch -n {} -- train {} --resume auto",
          resume_path, meta.world_size, meta.world_size * per_rank, s.context.world_size,
          s.context.world_size * per_rank, meta.world_size, meta.world_size, s.request.run_dir));
    }
    point.start_iter = meta.next_iter;
    point.carried_window = meta.window;
    s.seconds_before = meta.seconds;
    // The run's own checkpoint at that iteration exists: a stop there, or the end of a finished
    // run evaluated again, need not write it once more.
    if (s.request.resume == "auto") s.saved_iter = point.start_iter;
    // A new line of training: the run goes back to an older checkpoint, or its schedule changes
    // (train.iters). What the old line recorded past the resumed iteration is not this line's.
    const bool new_line = !checkpoints_after(s.run.checkpoint_dir(), point.start_iter).empty() ||
                          std::any_of(s.resume_changes.begin(), s.resume_changes.end(),
                                      [](const ConfigChange& c) { return c.key == "train.iters"; });
    point.abandoned_after = new_line ? point.start_iter : -1;
    s.report_resume_changes(point.start_iter);
    if (s.scaler->enabled()) s.scaler->restore(meta.loss_scale, meta.loss_scale_growth);
    log::info("resumed from {} at iteration {}", resume_path, point.start_iter);
    if (config.train.save_best != "none") {
      s.best = best_to_resume(s.run.checkpoint_dir(), meta.best, config.train.save_best, point.abandoned_after);
      if (s.best.metric == config.train.save_best)
        log::info("best {} before the stop: {:.2f} at iteration {}", s.best.metric, s.best.value, s.best.iter);
      else if (s.best.recorded())
        log::info("the checkpoint kept the best {}; train.save_best = {} starts over", s.best.metric,
                  config.train.save_best);
    }
    break;
  }
  return point;
}

void Trainer::State::begin_run_folder(int64_t start_iter, int64_t abandoned_after) {
  State& s = *this;
  const Config& config = s.config;
  // From iteration 0 in a folder with records (a failed attempt retried, a done run whose
  // result.json and checkpoints are gone), those records are of a line this one replaces.
  const bool starts_over = start_iter == 0 && path_exists(s.run.metrics_path());
  s.forget_metrics_after(starts_over ? -1 : start_iter, /*validation_too=*/start_iter == config.train.iters);
  // Starting over, the earlier attempt's best.pt (validated, never checkpointed) is not this line's.
  if (starts_over) abandoned_after = 0;
  if (abandoned_after >= 0) {
    const std::string folder = set_aside_checkpoints_after(s.run.checkpoint_dir(), abandoned_after);
    if (!folder.empty())
      log::info("the checkpoints past iteration {} are of the line this resume abandons: moved to {}", abandoned_after,
                folder);
  }
  if (!same_config_on_disk(s.run.config_path(), config)) write_file_atomic(s.run.config_path(), to_toml(config));
  s.run.write_status(RunState::kRunning);
  // A resume: TensorBoard drops the earlier files' events past start_iter, as metrics.jsonl forgot
  // them; all of them when the run starts over.
  std::optional<int64_t> purge_step;
  if (start_iter > 0) purge_step = start_iter + 1;
  if (starts_over) purge_step = 0;
  s.board = std::make_unique<TensorBoardWriter>(s.run.tensorboard_dir(), purge_step);
}

int64_t Trainer::resume() {
  State& s = *state_;
  const Config& config = s.config;
  SEGRUN_CHECK(s.model, Error, "Trainer::resume: set_up() first");
  const State::ResumePoint point = s.load_resume_point();
  const int64_t start_iter = point.start_iter;

  dist::GradSyncOptions sync_options;
  sync_options.bucket_mb = config.dist.bucket_mb;
  sync_options.overlap = config.dist.overlap;
  s.grad_sync = std::make_unique<dist::GradientSync>(s.model->parameters(), s.comm, sync_options);
  s.loader = std::make_unique<data::TrainLoader>(s.store, config.data, s.context.world_rank, s.context.world_size,
                                                 config.train.seed, start_iter * config.train.accumulate, s.device,
                                                 config.train.accumulate);
  std::string accumulation;  // " x 2 micro-batches (global batch 16)" under train.accumulate = 2
  if (config.train.accumulate > 1)
    accumulation = segrun::format(" x {} micro-batches (global batch {})", config.train.accumulate, s.global_batch);
  log::info("training {} for {} iterations on {} rank(s) x batch {}{} ({} threads/rank), backend {}{}, {}", s.signature,
            config.train.iters, s.context.world_size, config.data.batch_per_rank, accumulation,
            s.context.intra_op_threads, s.comm->backend_name(), overlap_phrase(*s.grad_sync),
            precision_name(s.precision));
  s.reset_window(start_iter);
  s.reopen_window(point.carried_window);
  s.model->train();
  if (s.root) s.begin_run_folder(start_iter, point.abandoned_after);
  s.began = true;
  return start_iter;
}

void Trainer::step(int64_t iter) {
  State& s = *state_;
  const Config& config = s.config;
  SEGRUN_CHECK(s.loader, Error, "Trainer::step: resume() first");
  s.lr = lr_at(config.train, iter);  // the head's; each group follows its own (lr_schedule.h)
  set_learning_rates(*s.optimizer, config.train, iter);
  // LibTorch's own generators: a function of (seed, iteration, rank); no model draw uses them.
  torch::manual_seed(hash_key(config.train.seed, static_cast<uint64_t>(iter),
                              static_cast<uint64_t>(s.context.world_rank), static_cast<uint64_t>(RngPurpose::kInit)));
  s.optimizer->zero_grad();
  s.model->set_iteration(iter);
  // train.accumulate micro-batches, each weighted 1/accumulate; only the last backward's gradients
  // are all-reduced (the earlier ones add up in .grad on each rank, as DDP's no_sync()).
  const int micro_batches = s.config.train.accumulate;
  models::LossTerms loss;  // the step's: the micro-batches' mean, detached, float64
  try {
    for (int m = 0; m < micro_batches; ++m) {
      const bool last = m + 1 == micro_batches;
      std::optional<dist::GradientSync::NoSyncGuard> local_only;
      if (!last) local_only.emplace(*s.grad_sync);
      const models::LossTerms micro = s.forward_backward(iter, micro_batches);
      if (m == 0) {
        loss = micro;
      } else {
        loss.total += micro.total;
        add_parts(loss.parts, micro.parts);
      }
    }
    s.grad_sync->synchronize();
    s.window_sync_wait += s.grad_sync->last_stats().wait_seconds;
    const bool finite = s.scaler->unscale_and_update(s.model->parameters());
    if (finite) {
      if (config.train.grad_clip > 0) {
        const torch::Tensor norm = clip_grad_norm(s.model->parameters(), config.train.grad_clip).to(torch::kFloat64);
        if (!s.window_grad_norm.defined()) s.window_grad_norm = torch::zeros_like(norm);
        s.window_grad_norm += norm;
      }
      s.optimizer->step();  // the first step allocates AdamW's two moments
      if (!s.window_total.defined()) s.window_total = torch::zeros_like(loss.total);
      s.window_total += loss.total;
      add_parts(s.window_parts, loss.parts);
    } else {
      ++s.window_skipped;
    }
  } catch (const c10::Error& e) {
    if (!is_out_of_memory(e)) throw;
    throw out_of_memory_error(MemoryPhase::kTraining, "training step " + std::to_string(iter), config, s.device,
                              e.what_without_backtrace());
  }
  ++s.window_iters;
  ++s.window_timed;
}

double Trainer::log_window(int64_t done) {
  State& s = *state_;
  const Config& config = s.config;
  s.check_window_finite(done - 1);
  // The total and every part averaged over the window's taken steps and the ranks, in one
  // all-reduce (with each rank's count of taken steps, equal on every rank).
  const int64_t taken = s.window_iters - s.window_skipped;
  std::vector<double> sums{s.window_total.defined() ? s.window_total.item<double>() : 0.0};
  for (const auto& part : s.window_parts) sums.push_back(part.second.item<double>());
  if (s.window_grad_norm.defined()) sums.push_back(s.window_grad_norm.item<double>());
  torch::Tensor means = torch::tensor(sums, torch::kFloat64) / static_cast<double>(std::max<int64_t>(taken, 1));
  s.control->allreduce(means);
  means = means / static_cast<double>(s.context.world_size);
  const double avg_loss = means[0].item<double>();
  std::string parts_text;
  for (size_t i = 0; i < s.window_parts.size() && s.window_parts.size() > 1; ++i)
    parts_text += segrun::format(" {} {:.4f}", s.window_parts[i].first, means[i + 1].item<double>());
  // The gradient norm is the same on every rank (all-reduced gradients): the mean keeps it.
  const double grad_norm = s.window_grad_norm.defined() ? means[means.size(0) - 1].item<double>() : std::nan("");
  if (s.window_grad_norm.defined()) parts_text += segrun::format(" grad_norm {:.4f}", grad_norm);
  if (s.scaler->enabled())
    parts_text += segrun::format(" scale {:g} skipped {}", s.scaler->current_scale(), s.window_skipped);
  const double secs = std::chrono::duration<double>(Clock::now() - s.window_start).count();
  const int64_t iters = std::max<int64_t>(s.window_timed, 1);
  const double images_per_s = secs > 0 ? s.window_timed * s.global_batch / secs : 0;
  const double eta = secs / iters * static_cast<double>(config.train.iters - done);
  log::info("iter {}/{} loss {:.4f}{} lr {:.3e} {:.1f} img/s eta {}", done, config.train.iters, avg_loss, parts_text,
            s.lr, images_per_s, format_duration(eta));
  if (s.loader && s.loader->skipped() > s.skipped_reported) {
    log::warn(
        "{} read(s) of corrupt records skipped so far (data.on_corrupt = \"skip\"); run "
        "`segrun data inspect {}` to list the records",
        s.loader->skipped(), config.data.store);
    s.skipped_reported = s.loader->skipped();
  }
  if (s.root) {
    nlohmann::ordered_json line{{"iter", done},
                                {"mode", "train"},
                                {"loss", avg_loss},
                                {"lr", s.lr},
                                {"images_per_s", images_per_s},
                                {"data_wait_fraction", secs > 0 ? s.window_wait / secs : 0.0},
                                {"sync_wait_fraction", secs > 0 ? s.window_sync_wait / secs : 0.0},
                                {"skipped_records", s.loader ? s.loader->skipped() : 0}};
    for (size_t i = 0; i < s.window_parts.size(); ++i) line[s.window_parts[i].first] = means[i + 1].item<double>();
    if (s.window_grad_norm.defined()) line["grad_norm"] = grad_norm;
    if (s.scaler->enabled()) {
      line["skipped_steps"] = s.window_skipped;
      line["loss_scale"] = s.scaler->current_scale();
    }
    s.run.append_metrics(line.dump());
    add_metrics_record(*s.board, line);
  }
  s.reset_window(done);
  return avg_loss;
}

// Periodic validations are single scale; the final one adds multi-scale + flip (mIoU_ms) when
// eval.report_ms, in the same metrics.jsonl line and in result.json.
void Trainer::evaluate(int64_t iter, bool final_eval) {
  State& s = *state_;
  if (!s.val_store) return;
  auto t0 = Clock::now();
  EvalRequest eval_request;
  eval_request.multi_scale = final_eval && s.config.eval.report_ms;
  std::vector<PredictionPicture> pictures;
  if (s.root) {
    eval_request.pictures = &pictures;
    eval_request.picture_count = kValPictures;
  }
  EvalOutcome result = engine::evaluate(*s.model, *s.val_store, s.config, *s.comm, eval_request);
  const SegMetrics& m = result.single;
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  log::info("iter {} val: mIoU {:.2f} mAcc {:.2f} aAcc {:.2f} ({:.1f}s)", iter, m.mIoU, m.mAcc, m.aAcc, secs);
  if (result.has_multi)
    log::info("iter {} val, multi-scale + flip ({} scales): mIoU_ms {:.2f} mAcc_ms {:.2f} aAcc_ms {:.2f}", iter,
              result.ms_scales.size(), result.multi.mIoU, result.multi.mAcc, result.multi.aAcc);
  if (!std::isnan(m.label_mAP))
    log::info("iter {} val: multi-label mAP {:.2f} (constant-score predictor {:.2f})", iter, m.label_mAP,
              m.label_mAP_prior);
  if (s.root) {
    nlohmann::ordered_json line = eval_record_json(result, s.outcome.class_names);
    line["iter"] = iter;
    line["mode"] = "val";
    s.run.append_metrics(line.dump());
    add_metrics_record(*s.board, line);
    save_pictures(pictures, iter, s.run.samples_dir(), *s.board);
  }
  s.outcome.evaluation = result;
  s.outcome.evaluated = true;
  s.offer_best(m, iter);
}

void Trainer::checkpoint(int64_t next_iter) {
  State& s = *state_;
  s.check_window_finite(next_iter - 1);
  CheckpointMeta meta = s.checkpoint_meta(next_iter);
  meta.window = s.open_window();
  if (s.root) {
    auto path = save_checkpoint(s.run.checkpoint_dir(), meta, *s.model, *s.optimizer, s.config.train.keep_checkpoints);
    log::info("checkpoint {}", path);
  }
  s.comm->barrier();
  s.saved_iter = next_iter;
}

bool Trainer::agree_to_stop() {
  State& s = *state_;
  // All ranks agree on a stop request so that none waits in a collective alone.
  // A launcher killed outright is a stop request too (core/launcher_watch.h): its parent-death
  // signal to mpirun may have come before mpirun could forward it.
  bool stop = process::stop_requested();
  if (!stop && s.launcher.gone()) {
    log::warn("the launcher that started this run ({}) has ended: stopping as on a stop request",
              s.launcher.describe());
    stop = true;
  }
  torch::Tensor stop_flag = torch::full({1}, stop ? 1 : 0, torch::kInt32);
  s.control->allreduce(stop_flag, dist::ReduceOp::kMax);
  return stop_flag[0].item<int>() != 0;
}

bool Trainer::end_of_iteration(int64_t iter) {
  const TrainConfig& train = state_->config.train;
  const int64_t done = iter + 1;
  const bool last = done == train.iters;
  if (done % state_->config.log.interval == 0 || last) log_window(done);
  if (!last && train.eval_interval > 0 && done % train.eval_interval == 0) {
    evaluate(done, /*final_eval=*/false);
    state_->model->train();
  }
  if (!last && train.checkpoint_interval > 0 && done % train.checkpoint_interval == 0) checkpoint(done);
  return agree_to_stop() && !last;
}

TrainOutcome Trainer::finish(int64_t next_iter, bool stopped) {
  State& s = *state_;
  s.outcome.iterations = next_iter;
  if (stopped) {
    // A stop right after a periodic checkpoint has it already (a second write of the same state
    // would only spend the grace period the scheduler gives before its kill).
    if (s.saved_iter != next_iter) checkpoint(next_iter);
    if (s.root) s.run.write_status(RunState::kPreempted, "stopped by signal at iteration " + std::to_string(next_iter));
    log::warn("stop requested: checkpointed at iteration {}; continue with --resume auto", next_iter);
    s.outcome.finished = false;
  } else {
    if (s.saved_iter != s.config.train.iters) checkpoint(s.config.train.iters);
    evaluate(s.config.train.iters, /*final_eval=*/true);
    s.outcome.finished = true;
  }
  s.outcome.seconds = std::chrono::duration<double>(Clock::now() - s.started).count();
  if (s.root && s.outcome.finished) {
    // The final validation (the last one: it runs right before finishing) and the run's totals.
    nlohmann::ordered_json result = s.outcome.evaluated ? eval_record_json(s.outcome.evaluation, s.outcome.class_names)
                                                        : nlohmann::ordered_json::object();
    result["iterations"] = s.outcome.iterations;
    result["seconds"] = s.training_seconds();  // every start's: s.outcome.seconds is this one's
    result["world_size"] = s.context.world_size;
    result["global_batch"] = s.global_batch;  // batch_per_rank x world_size x train.accumulate (sweeps/registry.h)
    result["name"] = s.config.name;
    // Flat numbers, so that `segrun table --metric best_mIoU` tabulates them like any metric.
    if (s.best.recorded() && s.best.metric == s.config.train.save_best) {
      result["best_" + s.best.metric] = s.best.value;
      result["best_iter"] = s.best.iter;
    }
    // An unreadable result.json (cut by a full disk, edited by hand) is kept, not replaced.
    if (!s.run.result_problem().empty())
      log::warn("{}: unreadable, set aside as {}", s.run.result_path(), s.run.set_aside_result());
    write_file_atomic(s.run.result_path(), result.dump(2) + "\n");
    s.run.write_status(RunState::kDone);
  }
  return s.outcome;
}

TrainOutcome Trainer::run() {
  State& s = *state_;
  if (s.already_done) {
    log::info("{} is done: {} iterations trained, nothing to do (a larger train.iters trains on)", s.request.run_dir,
              s.config.train.iters);
    s.outcome.finished = true;
    s.outcome.iterations = s.config.train.iters;
    return s.outcome;
  }
  try {
    set_up();
    int64_t iter = resume();
    bool stopped = false;
    while (iter < s.config.train.iters && !stopped) {
      step(iter);
      stopped = end_of_iteration(iter);
      ++iter;
    }
    return finish(iter, stopped);
  } catch (const std::exception& e) {
    // Only the process that holds the run may say it failed (not a second one it refused).
    // On several ranks it names itself and its log, as the launcher names another failing rank.
    if (s.lock && (s.began || !s.had_status)) {
      try {
        const int rank = s.launched_context.world_rank;
        s.run.write_status(RunState::kFailed, s.launched_context.world_size > 1
                                                  ? "rank " + std::to_string(rank) + ": " + e.what() + " (" +
                                                        s.run.log_dir() + "/rank-" + std::to_string(rank) + ".log)"
                                                  : std::string(e.what()));
      } catch (...) {
      }
    }
    throw;
  }
}

TrainOutcome train(const Config& config, const dist::RankContext& context, const TrainRequest& request) {
  return Trainer(config, context, request).run();
}

}  // namespace segrun::engine
