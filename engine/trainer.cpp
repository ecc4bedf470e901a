#include "engine/trainer.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/run_folder.h"
#include "core/log.h"
#include "core/rng.h"
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
#include "engine/precision.h"
#include "models/segmentor.h"

namespace segrun::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::atomic<int> g_stop_signal{0};  // set only by signal handlers; read at iteration ends

void on_stop_signal(int signal) { g_stop_signal.store(signal); }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", static_cast<long>(s / 3600),
                static_cast<long>((s / 60) % 60), static_cast<long>(s % 60));
  return buf;
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaction(sig, &action, nullptr);
}

bool stop_requested() { return g_stop_signal.load() != 0; }

TrainOutcome train(const Config& config, const dist::RankContext& rank_context, const TrainRequest& request) {
  const auto started = Clock::now();
  SEGRUN_CHECK(!request.run_dir.empty(), ConfigError, "train: a run directory is required");
  // A paper recipe without its CLIP weights would silently train from random weights and a random
  // text codebook: a config must say so ("none").
  SEGRUN_CHECK(!config.model.pretrained.empty(), ConfigError,
               (config.source.empty() ? std::string("config") : config.source)
                   << ": model.pretrained: not set; point it at OpenAI CLIP's archive (RN50.pt, RN101.pt), or set "
                      "it to \"none\" to train from random weights on purpose");
  RunFolder run(request.run_dir);
  const bool root = rank_context.is_root();

  // Refuse to silently overwrite a run that has progress unless asked to resume.
  std::vector<std::string> resume_candidates;  // tried in order (auto: newest first)
  if (request.resume == "auto") {
    resume_candidates = checkpoints_newest_first(run.checkpoint_dir());
  } else if (!request.resume.empty()) {
    resume_candidates = {request.resume};
  } else if (!checkpoints_newest_first(run.checkpoint_dir()).empty()) {
    throw ConfigError(run.root() + ": run directory already has checkpoints; pass --resume auto to "
                      "continue it, or choose another --run-dir");
  }

  run.create();
  log::LogOptions log_options;
  log_options.rank = rank_context.world_rank;
  log_options.world = rank_context.world_size;
  log_options.dir = run.log_dir();
  log_options.level = config.log.level;
  log::init_logging(log_options);
  if (root) {
    if (int stale = remove_stale_temp_files(run.checkpoint_dir()))
      log::warn("removed {} partial checkpoint file(s) left by an interrupted write", stale);
    write_file_atomic(run.config_path(), to_toml(config));
    run.write_status(RunState::kRunning);
  }
  install_stop_handlers();

  TrainOutcome outcome;
  try {
    const DeviceSetup setup = setup_device(config, rank_context);
    const dist::RankContext& context = setup.context;
    const torch::Device device = setup.device;
    std::shared_ptr<dist::Communicator> comm = setup.comm;
    // Host-side agreement (the stop flag, the logged loss means) over MPI, so that it never waits
    // for the GPU's queue the way an NCCL collective on a host tensor would.
    std::shared_ptr<dist::Communicator> control = comm;
    if (comm->backend_name() != "mpi") {
      dist::CommunicatorOptions control_options;
      control_options.timeout_s = config.dist.timeout_s;
      control_options.name = "control";
      control = dist::make_communicator("mpi", context, control_options);
    }
    const Precision precision = parse_precision(config.train.precision, device);
    set_math_modes(config.train.tf32, config.train.cudnn_benchmark);
    LossScaler scaler(precision == Precision::kFp16);
    SEGRUN_CHECK(!config.data.store.empty(), ConfigError,
                 (config.source.empty() ? "config" : config.source) << ": data.store: not set");
    auto store = std::make_shared<data::StoreReader>(config.data.store);
    check_store_matches(*store, config.data.store, config);
    std::shared_ptr<data::StoreReader> val_store;
    if (!config.data.val_store.empty()) {
      val_store = std::make_shared<data::StoreReader>(config.data.val_store);
      check_store_matches(*val_store, config.data.val_store, config);
    }
    const int num_classes = store->num_classes();
    outcome.class_names = store->class_names();

    torch::manual_seed(hash_key(config.train.seed, 0, 0, static_cast<uint64_t>(RngPurpose::kInit)));
    auto model = build_model(config, *store, comm);
    model->to(device);
    dist::broadcast_module_state(*model, *comm);
    auto optimizer = make_optimizer(*model, config.train);
    for (const ParameterGroup& g : parameter_groups(*model, config.train))
      log::info("optimizer group {}: {} tensors, lr x{:g}, weight decay {:g}", g.name, g.parameters.size(), g.lr_mult,
                g.weight_decay);
    const std::string signature = model_signature(config, num_classes);

    int64_t start_iter = 0;
    for (size_t i = 0; i < resume_candidates.size(); ++i) {
      const std::string& resume_path = resume_candidates[i];
      CheckpointMeta meta;
      try {
        meta = load_checkpoint(resume_path, signature, *model, optimizer.get());
      } catch (const UnreadableCheckpointError& e) {
        // --resume auto falls back to the previous checkpoint; an explicit path does not.
        if (request.resume != "auto" || i + 1 == resume_candidates.size()) throw;
        log::warn("{}; trying the previous checkpoint", e.what());
        continue;
      }
      if (meta.seed != config.train.seed)
        log::warn("resuming {} written with seed {} under train.seed = {}", resume_path, meta.seed,
                  config.train.seed);
      start_iter = meta.next_iter;
      if (scaler.enabled()) scaler.restore(meta.loss_scale, meta.loss_scale_growth);
      log::info("resumed from {} at iteration {}", resume_path, start_iter);
      break;
    }

    dist::GradSyncOptions sync_options;
    sync_options.bucket_mb = config.dist.bucket_mb;
    sync_options.overlap = config.dist.overlap;
    dist::GradientSync grad_sync(model->parameters(), comm, sync_options);
    data::TrainLoader loader(store, config.data, context.world_rank, context.world_size,
                             config.train.seed, start_iter, device);

    const LrScheduleOptions schedule = lr_schedule_options(config.train);
    const int64_t global_batch = static_cast<int64_t>(config.data.batch_per_rank) * context.world_size;
    log::info("training {} for {} iterations on {} rank(s) x batch {} ({} threads/rank), backend {}, {}",
              signature, config.train.iters, context.world_size, config.data.batch_per_rank,
              context.intra_op_threads, comm->backend_name(), precision_name(precision));

    auto window_start = Clock::now();
    int64_t window_iters = 0;
    int64_t window_skipped = 0;  // fp16 steps skipped for inf/nan gradients
    int64_t window_first = start_iter;
    // The total and each loss part summed over the window on the device: read once per log line
    // (and before a checkpoint), so that no iteration waits for the GPU to report its loss.
    torch::Tensor window_total;
    std::vector<std::pair<std::string, torch::Tensor>> window_parts;
    double window_wait = 0;  // seconds this rank waited for data in the window
    double window_sync_wait = 0;  // seconds backward's end waited for gradient all-reduces
    int64_t skipped_reported = 0;  // corrupt records already reported
    // A non-finite loss (fp32/bf16; fp16 skips such steps) ends the run before a checkpoint or a
    // log line could carry it.
    auto check_window_finite = [&](int64_t last_iter) {
      if (!window_total.defined() || scaler.enabled()) return;
      const double total = window_total.item<double>();
      if (!std::isfinite(total))
        throw Error("iterations " + std::to_string(window_first) + "-" + std::to_string(last_iter) + ": loss is " +
                    std::to_string(total) + " on rank " + std::to_string(context.world_rank) +
                    "; lower train.lr or set train.grad_clip");
    };
    // Periodic validations are single scale; the final one adds multi-scale + flip (mIoU_ms)
    // when eval.report_ms, in the same metrics.jsonl line and in result.json.
    auto evaluate_now = [&](int64_t iter, bool final_eval) {
      if (!val_store) return;
      auto t0 = Clock::now();
      EvalRequest eval_request;
      eval_request.multi_scale = final_eval && config.eval.report_ms;
      EvalOutcome result = evaluate(*model, *val_store, config, *comm, eval_request);
      const SegMetrics& m = result.single;
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      log::info("iter {} val: mIoU {:.2f} mAcc {:.2f} aAcc {:.2f} ({:.1f}s)", iter, m.mIoU, m.mAcc,
                m.aAcc, secs);
      if (result.has_multi)
        log::info("iter {} val, multi-scale + flip ({} scales): mIoU_ms {:.2f} mAcc_ms {:.2f} aAcc_ms {:.2f}",
                  iter, result.ms_scales.size(), result.multi.mIoU, result.multi.mAcc, result.multi.aAcc);
      if (!std::isnan(m.label_mAP))
        log::info("iter {} val: multi-label mAP {:.2f} (constant-score predictor {:.2f})", iter, m.label_mAP,
                  m.label_mAP_prior);
      if (root) {
        nlohmann::ordered_json line = eval_record_json(result, outcome.class_names);
        line["iter"] = iter;
        line["mode"] = "val";
        run.append_metrics(line.dump());
      }
      outcome.evaluation = result;
      outcome.evaluated = true;
    };
    auto checkpoint_now = [&](int64_t next_iter) {
      check_window_finite(next_iter - 1);
      if (root) {
        CheckpointMeta meta{next_iter, config.train.seed, context.world_size, signature};
        if (scaler.enabled()) {
          meta.loss_scale = scaler.current_scale();
          meta.loss_scale_growth = scaler.growth_tracker();
        }
        auto path = save_checkpoint(run.checkpoint_dir(), meta, *model, *optimizer,
                                    config.train.keep_checkpoints);
        log::info("checkpoint {}", path);
      }
      comm->barrier();
    };

    model->train();
    int64_t iter = start_iter;
    bool stopped = false;
    torch::Tensor stop_flag = torch::zeros({1}, torch::kInt32);
    for (; iter < config.train.iters; ++iter) {
      const double lr = lr_at(schedule, iter);
      set_learning_rates(*optimizer, lr);
      // LibTorch's own generators: a function of (seed, iteration, rank); no model draw uses them.
      torch::manual_seed(hash_key(config.train.seed, static_cast<uint64_t>(iter),
                                  static_cast<uint64_t>(context.world_rank),
                                  static_cast<uint64_t>(RngPurpose::kInit)));
      const auto wait_start = Clock::now();
      data::Batch batch = loader.next();
      window_wait += std::chrono::duration<double>(Clock::now() - wait_start).count();
      // Pinned host batches (see TrainLoader) copy to the GPU asynchronously.
      const torch::Tensor images = batch.images.to(device, /*non_blocking=*/true);
      const torch::Tensor labels = batch.labels.to(device, /*non_blocking=*/true);
      optimizer->zero_grad();
      model->set_iteration(iter);
      // Every draw of the model (dropout, batch drop, point sampling) is keyed by (seed,
      // iteration, the sample's global position): the same on any number of ranks.
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
      scaler.scale(loss.total).backward();
      grad_sync.synchronize();
      window_sync_wait += grad_sync.last_stats().wait_seconds;
      const bool finite = scaler.unscale_and_update(model->parameters());
      if (finite) {
        if (config.train.grad_clip > 0)
          torch::nn::utils::clip_grad_norm_(model->parameters(), config.train.grad_clip);
        optimizer->step();
        if (!window_total.defined()) {
          window_total = torch::zeros({}, loss.total.options().dtype(torch::kFloat64));
          for (const auto& part : loss.parts)
            window_parts.emplace_back(part.first, torch::zeros({}, part.second.options().dtype(torch::kFloat64)));
        }
        window_total += loss.total.detach().to(torch::kFloat64);
        for (size_t i = 0; i < loss.parts.size() && i < window_parts.size(); ++i)
          window_parts[i].second += loss.parts[i].second.detach().to(torch::kFloat64);
      } else {
        ++window_skipped;
      }
      ++window_iters;

      const int64_t done = iter + 1;
      if (done % config.log.interval == 0 || done == config.train.iters) {
        check_window_finite(iter);
        // The total and every part averaged over the window's taken steps and the ranks, in one
        // all-reduce (with each rank's count of taken steps, equal on every rank).
        const int64_t taken = window_iters - window_skipped;
        std::vector<double> sums{window_total.defined() ? window_total.item<double>() : 0.0};
        for (const auto& part : window_parts) sums.push_back(part.second.item<double>());
        torch::Tensor means = torch::tensor(sums, torch::kFloat64) / static_cast<double>(std::max<int64_t>(taken, 1));
        control->allreduce(means);
        means = means / static_cast<double>(context.world_size);
        const double avg_loss = means[0].item<double>();
        std::string parts_text;
        for (size_t i = 0; i < window_parts.size() && window_parts.size() > 1; ++i)
          parts_text += segrun::format(" {} {:.4f}", window_parts[i].first, means[i + 1].item<double>());
        if (scaler.enabled())
          parts_text += segrun::format(" scale {:g} skipped {}", scaler.current_scale(), window_skipped);
        const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
        const double images_per_s = secs > 0 ? window_iters * global_batch / secs : 0;
        const double eta = secs / window_iters * static_cast<double>(config.train.iters - done);
        log::info("iter {}/{} loss {:.4f}{} lr {:.3e} {:.1f} img/s eta {}", done, config.train.iters,
                  avg_loss, parts_text, lr, images_per_s, format_duration(eta));
        if (loader.skipped() > skipped_reported) {
          log::warn("{} read(s) of corrupt records skipped so far (data.on_corrupt = \"skip\"); run "
                    "`segrun data inspect {}` to list the records",
                    loader.skipped(), config.data.store);
          skipped_reported = loader.skipped();
        }
        if (root) {
          nlohmann::ordered_json line{{"iter", done}, {"mode", "train"}, {"loss", avg_loss}, {"lr", lr},
                                      {"images_per_s", images_per_s},
                                      {"data_wait_fraction", secs > 0 ? window_wait / secs : 0.0},
                                      {"sync_wait_fraction", secs > 0 ? window_sync_wait / secs : 0.0},
                                      {"skipped_records", loader.skipped()}};
          for (size_t i = 0; i < window_parts.size(); ++i) line[window_parts[i].first] = means[i + 1].item<double>();
          if (scaler.enabled()) {
            line["skipped_steps"] = window_skipped;
            line["loss_scale"] = scaler.current_scale();
          }
          run.append_metrics(line.dump());
        }
        window_start = Clock::now();
        window_iters = 0;
        window_skipped = 0;
        window_first = done;
        if (window_total.defined()) window_total.zero_();
        for (auto& part : window_parts) part.second.zero_();
        window_wait = 0;
        window_sync_wait = 0;
      }
      const bool last = done == config.train.iters;
      if (!last && config.train.eval_interval > 0 && done % config.train.eval_interval == 0) {
        evaluate_now(done, /*final_eval=*/false);
        model->train();
      }
      if (!last && config.train.checkpoint_interval > 0 && done % config.train.checkpoint_interval == 0)
        checkpoint_now(done);
      // All ranks agree on a stop request so that none waits in a collective alone.
      stop_flag[0] = stop_requested() ? 1 : 0;
      control->allreduce(stop_flag, dist::ReduceOp::kMax);
      if (stop_flag[0].item<int>() != 0 && !last) {
        ++iter;
        stopped = true;
        break;
      }
    }
    outcome.iterations = iter;
    if (stopped) {
      checkpoint_now(iter);
      if (root) run.write_status(RunState::kPreempted, "stopped by signal at iteration " + std::to_string(iter));
      log::warn("stop requested: checkpointed at iteration {}; continue with --resume auto", iter);
      outcome.finished = false;
    } else {
      checkpoint_now(config.train.iters);
      evaluate_now(config.train.iters, /*final_eval=*/true);
      outcome.finished = true;
    }
    outcome.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (root && outcome.finished) {
      // The final validation (the last one: it runs right before finishing) and the run's totals.
      nlohmann::ordered_json result = outcome.evaluated ? eval_record_json(outcome.evaluation, outcome.class_names)
                                                        : nlohmann::ordered_json::object();
      result["iterations"] = outcome.iterations;
      result["seconds"] = outcome.seconds;
      result["world_size"] = context.world_size;
      result["name"] = config.name;
      write_file_atomic(run.result_path(), result.dump(2) + "\n");
      run.write_status(RunState::kDone);
    }
  } catch (const std::exception& e) {
    if (root) {
      try {
        run.write_status(RunState::kFailed, e.what());
      } catch (...) {
      }
    }
    throw;
  }
  return outcome;
}

}  // namespace segrun::engine
