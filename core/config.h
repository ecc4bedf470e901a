#pragma once
// Experiment configuration: TOML files parsed once into these plain per-module structs (modules
// never see toml++). Every field has a default; the schema (config.cpp) lists each key with its
// type and valid range. Loading reports the first problem as ConfigError with
// "<file>:<line>: <key>: <what is wrong>" and, for an unknown key, the nearest valid key.
// Overrides are "dotted.key=value" strings (value as command_line_value.h reads it: TOML syntax,
// decimals such as .5, bare words are strings) applied after the file and checked exactly like it. to_toml() writes
// every field, defaults included, so the run directory's config.toml reproduces the run on its own.

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/kinds.h"  // the names model.head, model.backbone and data.layout choose from

namespace segrun {

struct DataConfig {
  std::string layout = "ade20k";          // dataset_layouts() (core/kinds.h): class names and label mapping
  std::string store;                      // train store (manifest path)
  std::string val_store;                  // validation store
  std::array<int, 2> crop{512, 512};      // H, W
  std::array<int, 2> scale{2048, 512};    // mmseg img_scale (long, short)
  std::array<double, 2> ratio{0.5, 2.0};  // random resize ratio range
  double cat_max_ratio = 0.75;
  double flip_prob = 0.5;
  bool photometric = true;
  std::string normalize = "clip";  // clip | imagenet: the mean/std images are normalized with
  int batch_per_rank = 4;
  int workers = 4;
  int prefetch = 4;                 // batches queued ahead per rank
  std::string on_corrupt = "fail";  // fail | skip
};

// CLIP-SP head (model.head = "clip_sp"), paper defaults; see docs/models.md.
struct ClipSpConfig {
  std::string ml_decoder = "dual_graphformer";  // dual_graphformer | mlp
  int graph_blocks = 3;                         // Dual GraphFormer blocks
  int graph_nodes = 64;                         // N: image-path graph nodes
  int top_k = 30;                               // k: labels turned into scene tokens (<= classes)
  int attn_dim = 512;                           // Dual GraphFormer cross-attention width
  int heads = 8;
  int srm_dim = 256;                // Scene Refinement non-local attention width
  std::string srm_gate = "linear";  // x4' = T_g * x4 (paper Eq. 4) | "sigmoid": sigmoid(T_g) * x4 (SENet)
  bool srm_output_proj = true;      // the non-local block's W_z on the attended features [38]
  double drop_r_start = 0.9;        // batch drop: r = max(r_end, r_start * decay^iter)
  double drop_r_end = 0.1;
  double drop_decay = 0.9999;
  // "slots" (the paper's words, Sec. 3.5): each of the batch's top-k label slots is replaced, with
  // probability r, by a class sampled from the image's ground truth, whose scene token carries
  // probability 1; "images": each image, with probability r, takes all its slots from its ground
  // truth (filled up with its top predicted absent classes), tokens keep the predicted probability.
  std::string drop_mode = "slots";
  double lambda_ml = 10.0;  // lambda1: asymmetric multi-label loss weight
  double lambda_aux = 0.4;  // lambda2: scene-attention auxiliary CE weight
  double asl_gamma_neg = 4.0;
  double asl_gamma_pos = 1.0;
  double asl_clip = 0.05;
};

// The frozen CLIP text encoder of text-driven heads (defaults = OpenAI CLIP's; smaller for tiny
// CPU configs). Its embedding width always equals the visual embedding width.
struct TextConfig {
  int width = 512;
  int layers = 12;
  int heads = 8;
  std::string prompt = "a photo of a {}.";  // "{}" stands for the class name
};

// Mask2Former head (model.head = "mask2former"), Mask2Former's ADE20K defaults; see docs/models.md.
struct Mask2FormerConfig {
  int num_queries = 100;
  int hidden_dim = 256;  // pixel decoder, transformer decoder and mask feature width
  int dec_layers = 9;    // masked-attention decoder layers
  int enc_layers = 6;    // deformable attention encoder layers
  int heads = 8;         // attention heads (encoder and decoder)
  int enc_points = 4;    // deformable sampling points per head and level
  int enc_ffn = 1024;
  int dec_ffn = 2048;
  int num_points = 12544;  // sampled points for matching and mask losses
  double oversample = 3.0;
  double importance = 0.75;
  double class_weight = 2.0;
  double mask_weight = 5.0;
  double dice_weight = 5.0;
  double no_object_weight = 0.1;
  bool supervise_initial = false;  // also supervise the prediction made before layer 0
  // What the mask (BCE) and dice losses are divided by: the number of target masks (Mask2Former)
  // or the sum of the class weights of all queries (MTA-CLIP's code); both averaged over ranks.
  std::string mask_loss_norm = "num_masks";  // num_masks | class_weight_sum
};

// MTA-CLIP head (model.head = "mta_clip"): the Mask2Former of `model.mask2former` (whose
// class_weight / mask_weight / dice_weight are the paper's lambda1 / lambda2) plus the mask-text
// alignment below; see docs/models.md.
struct MtaClipConfig {
  int prompts = 3;                   // K learnable context prompts (1 = no MTPL)
  int context_length = 8;            // M context vectors per prompt
  std::string negatives = "mixneg";  // mixneg | separateneg
  bool joint_attention = true;       // false = separate self-attention for text and mask queries
  bool text_enhanced = true;         // text queries join the mask queries in the decoder
  bool contrastive = true;           // mask-to-text contrastive loss (MTCL) after every layer
  double temperature = 1.0;          // tau in S = cos(m', t') / tau
  double lambda_sim = 1.0;           // lambda3
  // Which queries the contrastive loss supervises: "all" (MTA-CLIP's code: every query, the
  // unmatched ones toward an extra "none" text class weighted no_object_weight, divided by the sum
  // of the weights) or "matched" (the Hungarian-matched ones, mean; no "none" class).
  std::string sim_queries = "all";
  // LayerNorm over the mask and text queries together before the decoder (MTA-CLIP's code) or
  // over the text queries only.
  bool joint_query_norm = true;
};

// CLIP vision transformer (a ViT-family model.backbone, e.g. "clip_vit_b16": patch 16); defaults = OpenAI's
// ViT-B/16, smaller for tiny CPU configs. See models/clip/clip_vit.h and docs/models.md.
struct VitConfig {
  int width = 768;  // token width
  int layers = 12;  // residual attention blocks
  int heads = 12;
  int embed_dim = 512;  // CLIP embedding width (visual proj; = the text encoder's)
  // Blocks whose patch tokens become the 1/4, 1/8, 1/16, 1/32 features (DenseCLIP's out_indices).
  std::vector<int> out_indices{3, 5, 7, 11};
  double drop_path_rate = 0.0;  // stochastic depth of the last block (linear from 0)
};

struct ModelConfig {
  std::string backbone = "clip_rn50";  // backbone_kinds() (core/kinds.h): clip_rn50 | clip_rn101 | clip_vit_b16
  int width = 64;                      // ResNet stem width (64 = the real RN50; unused by ViTs)
  VitConfig vit;                       // sizes of the ViT backbones (clip_vit_b16)
  std::string pretrained;              // OpenAI CLIP TorchScript archive; "none" = random init on
                                       // purpose ("" is refused by `segrun train`)
  std::string head = "fpn";            // head_kinds(): fpn | clip_sp | mask2former | mta_clip
  std::string norm = "syncbn";         // syncbn | bn | frozen_bn
  int fpn_channels = 256;              // FPN neck / head width
  double dropout = 0.1;                // Dropout2d before the classifier
  Mask2FormerConfig mask2former;
  ClipSpConfig clip_sp;
  MtaClipConfig mta_clip;
  TextConfig text;
};

struct TrainConfig {
  int64_t iters = 80000;
  double lr = 1e-4;
  double backbone_lr_mult = 0.1;
  double weight_decay = 1e-4;
  // Parameter groups as mmcv/mmengine's optimizer constructors form them (engine/optimizer.h):
  // parameters whose name contains one of these words get no weight decay (custom_keys with
  // decay_mult 0; the longest matching key wins, "backbone" included) ...
  std::vector<std::string> no_decay_keys;
  // ... and parameters of normalization layers (BN, GN, LN by type) that no key matches have
  // weight_decay * norm_decay_mult (norm_decay_mult).
  double norm_decay_mult = 1.0;
  int64_t warmup_iters = 1500;
  double warmup_ratio = 1e-6;
  double poly_power = 0.9;
  double min_lr = 1e-6;
  double grad_clip = 0.0;              // max global grad norm, 0 = off
  int64_t eval_interval = 8000;        // 0 = only at the end
  int64_t checkpoint_interval = 8000;  // 0 = only at the end
  int keep_checkpoints = 3;
  // none | mIoU | mAcc | aAcc: also keep checkpoints/best.pt, the model of the validation that
  // scored highest on this metric (single scale), carried across resumes (engine/checkpoint.h).
  std::string save_best = "none";
  uint64_t seed = 0;
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (autocast; fp16 adds loss scaling)
  bool tf32 = true;                // TF32 matmuls and convolutions on NVIDIA GPUs
  bool cudnn_benchmark = true;     // cuDNN picks the fastest convolution per shape
  // Gradient accumulation: micro-batches of data.batch_per_rank summed into each optimizer step,
  // so the global batch is batch_per_rank x ranks x accumulate (docs/distributed.md).
  int accumulate = 1;
};

struct EvalConfig {
  std::string mode = "whole";         // whole | slide
  std::array<int, 2> crop{512, 512};  // slide window (H, W)
  std::array<int, 2> stride{341, 341};
  std::vector<double> scales{1.0};
  bool flip = false;
  int batch = 1;
  // Multi-scale + flip evaluation (mmseg --aug-test), reported as mIoU_ms next to mIoU by the
  // final validation of `segrun train` and by `segrun eval` when report_ms (or `eval --ms`).
  std::vector<double> ms_scales{0.5, 0.75, 1.0, 1.25, 1.5, 1.75};
  // What ms_scales multiply: "scale", the image resized to data.scale (mmseg 0.x's
  // MultiScaleFlipAug: DenseCLIP, CLIP-SP), or "image", the image as decoded (mmseg 1.x's
  // TestTimeAug with Resize(scale_factor): MTA-CLIP).
  std::string ms_base = "scale";
  bool report_ms = false;
};

struct DistConfig {
  std::string device = "auto";   // auto | cpu | cuda (cuda:<local rank>); see dist/device.h
  std::string backend = "auto";  // auto | mpi | nccl
  double bucket_mb = 25.0;
  bool overlap = true;  // all-reduce buckets during backward (comm thread)
  double timeout_s = 600.0;
};

struct LogConfig {
  int64_t interval = 50;  // iterations between progress lines
  std::string level = "info";
};

// Slurm submission defaults (`segrun submit ... --on slurm`; CLI flags override them, a sweep's
// [fixed] table may set them for all its runs). Strings are written shell-quoted into job scripts.
struct SlurmConfig {
  std::string partition;  // "" = the cluster's default partition
  std::string account;
  std::string qos;
  std::string time;        // sbatch --time ("" = partition default), e.g. "1-00:00:00"
  std::string mem;         // sbatch --mem ("" = default), e.g. "64G"
  std::string constraint;  // sbatch --constraint
  int nodes = 1;
  int gpus_per_node = 0;          // 0 = CPU nodes: one rank per task
  int tasks_per_node = 0;         // 0 = gpus_per_node on GPU nodes, else the run's ranks placed by Slurm
  int cpus_per_task = 0;          // 0 = Slurm's default
  int max_parallel = 0;           // job array tasks at once (--array=..%M), 0 = no limit
  std::string launcher = "srun";  // srun | mpirun: how the batch script starts the ranks
  std::string mpi = "pmix";       // srun --mpi=<mpi>
  std::string signal = "USR1";    // USR1 | USR2 | TERM: sent <grace> s before the time limit, forwarded to
                                  // the ranks, which checkpoint and exit 75 on it (submitit uses USR2)
  int signal_grace_s = 300;       // --signal=B:<signal>@<grace>: checkpoint this long before the limit
  int max_requeues = 20;          // a preempted run requeues itself at most this often
};

struct ClusterConfig {
  SlurmConfig slurm;
};

struct Config {
  DataConfig data;
  ModelConfig model;
  TrainConfig train;
  EvalConfig eval;
  DistConfig dist;
  LogConfig log;
  ClusterConfig cluster;
  std::string name;                    // run name, default: config file stem
  std::string source;                  // file it was loaded from ("" = defaults only)
  std::vector<std::string> overrides;  // the command line's "key=value" texts, applied after the file
};

// Where the value in force of `key` came from, for messages: "override 'dist.device=cuda'" when
// the command line set it (its last override), else the file (config.source; "config" when the
// config is the defaults alone).
std::string origin_of(const Config& config, const std::string& key);
// The same for an error message that names keys: the last override whose key the message names,
// else the file. A check made after loading (a device, a model) blames what the user wrote.
std::string origin_of_message(const Config& config, const std::string& message);

// The run folder of a config when none is given: runs/<name>. ConfigError naming the key's origin
// when the name would put it elsewhere (absolute, or a '.' or '..' part: name = "..").
std::string default_run_dir(const Config& config);

// Parses `path` (TOML) then applies `overrides`. Relative store paths in the file are resolved
// against the file's directory. Throws ConfigError on the first problem.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Same, from TOML text; `origin` names it in messages.
Config parse_config(const std::string& toml_text, const std::string& origin,
                    const std::vector<std::string>& overrides = {});
// Every key with its resolved value, as TOML.
std::string to_toml(const Config& config);
// Every key (dotted, schema order) with its resolved value as TOML text ("0.1", "'clip'", "[ 512, 512 ]"):
// two configs are the same when these are.
std::vector<std::pair<std::string, std::string>> config_values(const Config& config);
// What a run reads before its first step and is not there: "data.store = /x/train: no such store
// folder" for data.store and data.val_store (when set) that are not folders ("...: not a store (no
// manifest.json; ...)" for a folder without one, a dataset folder say), and "model.pretrained =
// /x/RN50.pt: no such file" (unless "none"): for launchers, which check before starting ranks or
// queueing a job, so that a typo fails in a second, not when the job starts. Empty when all are.
std::vector<std::string> missing_inputs(const Config& config);
// ConfigError "<origin>: data.store = /x/train: no such store folder" for the first of them,
// blamed on the override that set it or the config file (origin_of_message); none when all are
// there.
void require_inputs(const Config& config);

// One key of the schema, as `segrun config --keys` and docs/config.md describe it.
struct KeyInfo {
  std::string key;            // dotted, e.g. "train.lr"
  std::string type;           // int | float | bool | string | path | int[2] | float[2] | int[] | float[] | string[]
  std::string default_value;  // TOML text, as config_values() writes it: "1e-04", "'clip'", "[ 512, 512 ]"
  // Numbers (each element of an array) lie in [min, max], or (min, max] when min_exclusive;
  // infinite bounds are open.
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;
  std::vector<std::string> choices;  // strings: the allowed values (empty = any)
  std::string help;                  // one line: what it does, its unit, the paper / mmseg convention
};
// Every key of the schema, in schema order (the order of to_toml and config_values).
std::vector<KeyInfo> config_key_infos();
// "[1, 1024]", "(0, 10]", "[0, inf)", "ade20k | cityscapes"; "" for a key that takes any value.
std::string key_range_text(const KeyInfo& info);

}  // namespace segrun
