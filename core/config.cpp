// Config schema, TOML parsing, overrides and resolved-config output. (sweeps/ reads its spec
// files with toml++ as well: sweeps/toml_values.h.)
#include "core/config.h"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <system_error>
#include <variant>

#include "core/command_line_value.h"
#include "core/error.h"
#include "core/format.h"
#include "core/spelling.h"
#include "core/toml_names.h"

namespace segrun {
namespace {

namespace fs = std::filesystem;

template <typename T>
using Ref = std::function<T&(Config&)>;

using AnyRef = std::variant<Ref<int>, Ref<int64_t>, Ref<uint64_t>, Ref<double>, Ref<bool>, Ref<std::string>,
                            Ref<std::array<int, 2>>, Ref<std::array<double, 2>>, Ref<std::vector<double>>,
                            Ref<std::vector<int>>, Ref<std::vector<std::string>>>;

struct Field {
  std::string key;
  AnyRef ref;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;
  std::vector<std::string> choices;  // for strings: allowed values (empty = any)
  bool is_path = false;              // relative paths resolve against the config file's folder
  std::string help;                  // one line for `segrun config --keys` and docs/config.md
};

// Where a value came from, for messages: "cfg.toml:12" or "override 'train.lr=x'".
struct Origin {
  std::string text;
};

[[noreturn]] void fail(const Origin& where, const std::string& key, const std::string& what) {
  throw ConfigError(where.text + ": " + key + ": " + what);
}

Origin origin_of(const std::string& file, const toml::node& node) {
  const auto& src = node.source();
  std::string text = file;
  if (src.begin.line > 0) text += ":" + std::to_string(src.begin.line);
  return Origin{text};
}

template <typename F>
Field make(std::string key, std::string help, F ref, double min = -std::numeric_limits<double>::infinity(),
           double max = std::numeric_limits<double>::infinity(), bool min_exclusive = false) {
  Field f;
  f.key = std::move(key);
  f.help = std::move(help);
  f.ref = ref;
  f.min = min;
  f.max = max;
  f.min_exclusive = min_exclusive;
  return f;
}

Field choice(std::string key, std::string help, Ref<std::string> ref, std::vector<std::string> choices) {
  Field f;
  f.key = std::move(key);
  f.help = std::move(help);
  f.ref = std::move(ref);
  f.choices = std::move(choices);
  return f;
}

Field path(std::string key, std::string help, Ref<std::string> ref) {
  Field f;
  f.key = std::move(key);
  f.help = std::move(help);
  f.ref = std::move(ref);
  f.is_path = true;
  return f;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// A Ref to `field` of the table that `path` leads to from Config:
// member_ref<&Config::train>(&TrainConfig::lr), member_ref<&Config::model, &ModelConfig::vit>(&VitConfig::width).
template <auto... path, typename Table, typename T>
Ref<T> member_ref(T Table::*field) {
  // clang-format off
  return [field](Config& c) -> T& { return (c .* ... .* path) .* field; };  // c.a.b...field
  // clang-format on
}

const std::vector<Field>& schema() {
  static const std::vector<Field> fields = [] {
    std::vector<Field> s;
    // One accessor per TOML table: in_train(&TrainConfig::lr) is the Ref for train.lr.
    auto in_data = [](auto DataConfig::*field) { return member_ref<&Config::data>(field); };
    auto in_model = [](auto ModelConfig::*field) { return member_ref<&Config::model>(field); };
    auto in_vit = [](auto VitConfig::*field) { return member_ref<&Config::model, &ModelConfig::vit>(field); };
    auto in_clip_sp = [](auto ClipSpConfig::*field) {
      return member_ref<&Config::model, &ModelConfig::clip_sp>(field);
    };
    auto in_text = [](auto TextConfig::*field) { return member_ref<&Config::model, &ModelConfig::text>(field); };
    auto in_mask2former = [](auto Mask2FormerConfig::*field) {
      return member_ref<&Config::model, &ModelConfig::mask2former>(field);
    };
    auto in_mta_clip = [](auto MtaClipConfig::*field) {
      return member_ref<&Config::model, &ModelConfig::mta_clip>(field);
    };
    auto in_train = [](auto TrainConfig::*field) { return member_ref<&Config::train>(field); };
    auto in_eval = [](auto EvalConfig::*field) { return member_ref<&Config::eval>(field); };
    auto in_dist = [](auto DistConfig::*field) { return member_ref<&Config::dist>(field); };
    auto in_log = [](auto LogConfig::*field) { return member_ref<&Config::log>(field); };
    auto in_slurm = [](auto SlurmConfig::*field) { return member_ref<&Config::cluster, &ClusterConfig::slurm>(field); };
    s.push_back(make("name", "run name; \"\" = the config file's stem (runs/<name> by default)",
                     Ref<std::string>([](Config& c) -> std::string& { return c.name; })));
    // [data]
    std::vector<std::string> layouts;
    for (const auto& [name, layout] : dataset_layouts()) layouts.push_back(name);
    s.push_back(choice("data.layout",
                       "dataset layout: the class names and the label mapping of the stores (data/classes.h)",
                       in_data(&DataConfig::layout), layouts));
    s.push_back(
        path("data.store",
             "training store: a `data pack` folder or its manifest.json (relative: to the config file's folder)",
             in_data(&DataConfig::store)));
    s.push_back(path("data.val_store", "validation store, as data.store; \"\" = no validation",
                     in_data(&DataConfig::val_store)));
    s.push_back(make("data.crop",
                     "training crop [H, W] in pixels (mmseg crop_size); both sides multiples of 16 for clip_vit_b16",
                     in_data(&DataConfig::crop), 16, 8192));
    s.push_back(make("data.scale",
                     "mmseg img_scale [long, short] edge bounds in pixels: train resize base, test keep-ratio resize",
                     in_data(&DataConfig::scale), 16, 16384));
    s.push_back(make(
        "data.ratio",
        "[low, high): the training resize multiplies data.scale by a ratio drawn uniformly here (mmseg ratio_range)",
        in_data(&DataConfig::ratio), 0, 10, true));
    s.push_back(
        make("data.cat_max_ratio",
             "RandomCrop redraws (up to 10 times) a crop where one class covers more than this fraction; 1 = off",
             in_data(&DataConfig::cat_max_ratio), 0, 1, true));
    s.push_back(make("data.flip_prob", "probability of a horizontal flip in training (mmseg RandomFlip prob)",
                     in_data(&DataConfig::flip_prob), 0, 1));
    s.push_back(make("data.photometric",
                     "mmseg PhotoMetricDistortion (brightness, contrast, saturation, hue) in training",
                     in_data(&DataConfig::photometric)));
    s.push_back(choice(
        "data.normalize",
        "image mean/std: clip = CLIP's (DenseCLIP, CLIP-SP), imagenet = ImageNet's (mmseg default, MTA-CLIP's code)",
        in_data(&DataConfig::normalize), {"clip", "imagenet"}));
    s.push_back(make("data.batch_per_rank",
                     "images per rank per micro-batch; global batch = batch_per_rank x ranks x train.accumulate",
                     in_data(&DataConfig::batch_per_rank), 1, 1024));
    s.push_back(make("data.workers",
                     "training loader threads per rank that read, decode and transform samples (evaluation reads on "
                     "the rank's thread)",
                     in_data(&DataConfig::workers), 1, 64));
    s.push_back(make("data.prefetch", "batches queued ahead per rank", in_data(&DataConfig::prefetch), 1, 64));
    s.push_back(choice(
        "data.on_corrupt",
        "a record failing its CRC: fail = stop naming it; skip = train on the next valid record, leave it out of eval",
        in_data(&DataConfig::on_corrupt), {"fail", "skip"}));
    // [model]
    std::vector<std::string> backbones;
    for (const auto& backbone : backbone_kinds()) backbones.push_back(backbone.name);
    s.push_back(choice("model.backbone",
                       "CLIP visual tower: a ModifiedResNet (width: model.width) or a ViT (sizes: [model.vit])",
                       in_model(&ModelConfig::backbone), backbones));
    s.push_back(
        make("model.width",
             "ResNet width w (64 = the real RN50/RN101; smaller for tiny CPU configs); a multiple of 8; unused by ViTs",
             in_model(&ModelConfig::width), 8, 256));
    s.push_back(path(
        "model.pretrained",
        "OpenAI CLIP TorchScript archive (RN50.pt, ...); \"none\" = random init on purpose; \"\" is refused by train",
        in_model(&ModelConfig::pretrained)));
    std::vector<std::string> heads;
    for (const auto& [name, kind] : head_kinds()) heads.push_back(name);
    s.push_back(choice("model.head",
                       "segmentation head: fpn = Semantic FPN (DenseCLIP baseline), clip_sp, mask2former, mta_clip",
                       in_model(&ModelConfig::head), heads));
    s.push_back(choice("model.norm",
                       "BatchNorm: syncbn (global batch stats), bn (per rank), frozen_bn (a ResNet backbone's BN "
                       "frozen; new layers syncbn)",
                       in_model(&ModelConfig::norm), {"syncbn", "bn", "frozen_bn"}));
    s.push_back(make("model.fpn_channels", "FPN neck and Semantic FPN head width (256 in the papers)",
                     in_model(&ModelConfig::fpn_channels), 8, 1024));
    s.push_back(make("model.dropout", "Dropout2d rate before the Semantic FPN classifier (mmseg FPNHead dropout_ratio)",
                     in_model(&ModelConfig::dropout), 0, 0.99));
    // [model.vit]
    s.push_back(make("model.vit.width", "ViT token width (768 = ViT-B/16); divisible by model.vit.heads",
                     in_vit(&VitConfig::width), 8, 8192));
    s.push_back(make("model.vit.layers", "ViT residual attention blocks", in_vit(&VitConfig::layers), 1, 256));
    s.push_back(make("model.vit.heads", "ViT attention heads", in_vit(&VitConfig::heads), 1, 256));
    s.push_back(make("model.vit.embed_dim", "CLIP embedding width of the ViT (visual proj; equals the text encoder's)",
                     in_vit(&VitConfig::embed_dim), 8, 8192));
    s.push_back(make("model.vit.out_indices",
                     "4 increasing 0-based blocks whose patch tokens give the 1/4, 1/8, 1/16, 1/32 levels (DenseCLIP)",
                     in_vit(&VitConfig::out_indices), 0, 255));
    s.push_back(make("model.vit.drop_path_rate",
                     "stochastic depth of the last block, linear from 0 over the blocks (DenseCLIP drop_path_rate)",
                     in_vit(&VitConfig::drop_path_rate), 0, 0.99));
    // [model.clip_sp]
    s.push_back(choice("model.clip_sp.ml_decoder",
                       "CLIP-SP multi-label decoder: dual_graphformer (the paper's) or mlp (Table 2's MLP row)",
                       in_clip_sp(&ClipSpConfig::ml_decoder), {"dual_graphformer", "mlp"}));
    s.push_back(make("model.clip_sp.graph_blocks", "Dual GraphFormer blocks (paper Table 3)",
                     in_clip_sp(&ClipSpConfig::graph_blocks), 1, 64));
    s.push_back(make("model.clip_sp.graph_nodes",
                     "N: graph nodes of the Dual GraphFormer's image path (the paper gives none; 64)",
                     in_clip_sp(&ClipSpConfig::graph_nodes), 1, 4096));
    s.push_back(make("model.clip_sp.top_k",
                     "k: labels turned into scene tokens (paper Table 4); at most the layout's classes",
                     in_clip_sp(&ClipSpConfig::top_k), 1, 4096));
    s.push_back(make("model.clip_sp.attn_dim",
                     "Dual GraphFormer cross-attention width; divisible by model.clip_sp.heads",
                     in_clip_sp(&ClipSpConfig::attn_dim), 8, 8192));
    s.push_back(
        make("model.clip_sp.heads", "Dual GraphFormer cross-attention heads", in_clip_sp(&ClipSpConfig::heads), 1, 64));
    s.push_back(make("model.clip_sp.srm_dim", "Scene Refinement Module non-local attention width",
                     in_clip_sp(&ClipSpConfig::srm_dim), 8, 8192));
    s.push_back(make("model.clip_sp.batch_drop.r_start",
                     "batch drop ratio at iteration 0: r = max(r_end, r_start * decay^iter) (paper Sec. 3.5, Table 5)",
                     in_clip_sp(&ClipSpConfig::drop_r_start), 0, 1));
    s.push_back(make("model.clip_sp.batch_drop.r_end", "batch drop ratio floor (r_start = r_end = 0: no batch drop)",
                     in_clip_sp(&ClipSpConfig::drop_r_end), 0, 1));
    s.push_back(make("model.clip_sp.batch_drop.decay", "per-iteration decay factor of the batch drop ratio",
                     in_clip_sp(&ClipSpConfig::drop_decay), 0, 1));
    s.push_back(choice(
        "model.clip_sp.batch_drop.mode",
        "slots: each top-k slot takes a GT class with probability r; images: each image takes all slots from its GT",
        in_clip_sp(&ClipSpConfig::drop_mode), {"slots", "images"}));
    s.push_back(choice("model.clip_sp.srm_gate",
                       "SRM channel gate: linear = x4' = T_g * x4 (paper Eq. 4); sigmoid = sigmoid(T_g) * x4 (SENet)",
                       in_clip_sp(&ClipSpConfig::srm_gate), {"linear", "sigmoid"}));
    s.push_back(make("model.clip_sp.srm_output_proj",
                     "the non-local block's output transform W_z on the attended features (Wang et al. [38])",
                     in_clip_sp(&ClipSpConfig::srm_output_proj)));
    s.push_back(make("model.clip_sp.lambda_ml",
                     "lambda1: weight of the asymmetric multi-label loss (paper Eq. 5, Table 7)",
                     in_clip_sp(&ClipSpConfig::lambda_ml), 0, 1e4));
    s.push_back(make("model.clip_sp.lambda_aux",
                     "lambda2: weight of the scene-attention auxiliary CE (paper Eq. 5, Table 7)",
                     in_clip_sp(&ClipSpConfig::lambda_aux), 0, 1e4));
    s.push_back(make("model.clip_sp.asl.gamma_neg", "ASL focusing parameter gamma- of the negatives",
                     in_clip_sp(&ClipSpConfig::asl_gamma_neg), 0, 100));
    s.push_back(make("model.clip_sp.asl.gamma_pos", "ASL focusing parameter gamma+ of the positives",
                     in_clip_sp(&ClipSpConfig::asl_gamma_pos), 0, 100));
    s.push_back(make("model.clip_sp.asl.clip", "ASL probability margin m shifting the negatives",
                     in_clip_sp(&ClipSpConfig::asl_clip), 0, 1));
    // [model.text]
    s.push_back(
        make("model.text.width",
             "frozen CLIP text encoder width (512 = OpenAI's; smaller for tiny CPU configs); divisible by heads",
             in_text(&TextConfig::width), 8, 8192));
    s.push_back(make("model.text.layers", "text encoder transformer layers", in_text(&TextConfig::layers), 1, 256));
    s.push_back(make("model.text.heads", "text encoder attention heads", in_text(&TextConfig::heads), 1, 256));
    s.push_back(
        make("model.text.prompt",
             "CLIP-SP's prompt template of the class texts; {} stands for the class name (MTA-CLIP learns its prompts)",
             in_text(&TextConfig::prompt)));
    // [model.mask2former]
    s.push_back(make("model.mask2former.num_queries", "N: mask queries of the Mask2Former decoder",
                     in_mask2former(&Mask2FormerConfig::num_queries), 1, 10000));
    s.push_back(make("model.mask2former.hidden_dim",
                     "pixel decoder, transformer decoder and mask feature width; a multiple of 32 and of heads",
                     in_mask2former(&Mask2FormerConfig::hidden_dim), 32, 4096));
    s.push_back(make("model.mask2former.dec_layers", "masked-attention transformer decoder layers",
                     in_mask2former(&Mask2FormerConfig::dec_layers), 1, 100));
    s.push_back(make("model.mask2former.enc_layers", "deformable attention encoder layers of the pixel decoder",
                     in_mask2former(&Mask2FormerConfig::enc_layers), 0, 100));
    s.push_back(make("model.mask2former.heads", "attention heads of the encoder and the decoder",
                     in_mask2former(&Mask2FormerConfig::heads), 1, 64));
    s.push_back(make("model.mask2former.enc_points", "deformable sampling points per head and level",
                     in_mask2former(&Mask2FormerConfig::enc_points), 1, 64));
    s.push_back(make("model.mask2former.enc_ffn", "encoder feed-forward width",
                     in_mask2former(&Mask2FormerConfig::enc_ffn), 1, 65536));
    s.push_back(make("model.mask2former.dec_ffn", "decoder feed-forward width",
                     in_mask2former(&Mask2FormerConfig::dec_ffn), 1, 65536));
    s.push_back(make("model.mask2former.num_points",
                     "points sampled per mask for matching and the mask losses (PointRend sampling; 112 x 112)",
                     in_mask2former(&Mask2FormerConfig::num_points), 1, 1 << 22));
    s.push_back(make("model.mask2former.oversample",
                     "PointRend oversample ratio: candidate points = num_points x oversample",
                     in_mask2former(&Mask2FormerConfig::oversample), 1, 100));
    s.push_back(make("model.mask2former.importance",
                     "fraction of the points taken from the most uncertain candidates (importance_sample_ratio)",
                     in_mask2former(&Mask2FormerConfig::importance), 0, 1));
    s.push_back(make("model.mask2former.class_weight",
                     "class CE weight in the loss and the matching cost (MTA-CLIP's lambda1)",
                     in_mask2former(&Mask2FormerConfig::class_weight), 0, 1e4));
    s.push_back(make("model.mask2former.mask_weight",
                     "mask BCE weight in the loss and the matching cost (MTA-CLIP's lambda2)",
                     in_mask2former(&Mask2FormerConfig::mask_weight), 0, 1e4));
    s.push_back(make("model.mask2former.dice_weight",
                     "mask dice weight in the loss and the matching cost (MTA-CLIP's lambda2)",
                     in_mask2former(&Mask2FormerConfig::dice_weight), 0, 1e4));
    s.push_back(make("model.mask2former.no_object_weight",
                     "class weight of the \"no object\" class (Mask2Former eos_coef)",
                     in_mask2former(&Mask2FormerConfig::no_object_weight), 0, 1e4));
    s.push_back(make("model.mask2former.supervise_initial", "also supervise the prediction made before decoder layer 0",
                     in_mask2former(&Mask2FormerConfig::supervise_initial)));
    s.push_back(choice("model.mask2former.mask_loss_norm",
                       "mask and dice losses divided by num_masks (Mask2Former) or class_weight_sum (MTA-CLIP's code)",
                       in_mask2former(&Mask2FormerConfig::mask_loss_norm), {"num_masks", "class_weight_sum"}));
    // [model.mta_clip]
    s.push_back(make("model.mta_clip.prompts", "K learnable context prompts (MTPL; 1 = no MTPL)",
                     in_mta_clip(&MtaClipConfig::prompts), 1, 64));
    s.push_back(make("model.mta_clip.context_length", "M learnable context vectors per prompt",
                     in_mta_clip(&MtaClipConfig::context_length), 1, 64));
    s.push_back(choice("model.mta_clip.negatives",
                       "contrastive negatives: mixneg = every other text query; separateneg = other classes' only",
                       in_mta_clip(&MtaClipConfig::negatives), {"mixneg", "separateneg"}));
    s.push_back(make("model.mta_clip.joint_attention",
                     "text and mask queries share self-attention; false = separate attentions (Table 4)",
                     in_mta_clip(&MtaClipConfig::joint_attention)));
    s.push_back(make("model.mta_clip.text_enhanced",
                     "text queries join the mask queries in the decoder; false = t' = t0",
                     in_mta_clip(&MtaClipConfig::text_enhanced)));
    s.push_back(make("model.mta_clip.contrastive", "mask-to-text contrastive loss (MTCL) after every decoder layer",
                     in_mta_clip(&MtaClipConfig::contrastive)));
    s.push_back(make("model.mta_clip.temperature", "tau in S = cos(m', t') / tau (the released code: 1; CLIP: 0.07)",
                     in_mta_clip(&MtaClipConfig::temperature), 1e-4, 100, true));
    s.push_back(make("model.mta_clip.lambda_sim", "lambda3: weight of the mask-to-text contrastive loss",
                     in_mta_clip(&MtaClipConfig::lambda_sim), 0, 1e4));
    s.push_back(
        choice("model.mta_clip.sim_queries",
               "queries the contrastive loss covers: all (the code: unmatched toward a \"none\" text) or matched",
               in_mta_clip(&MtaClipConfig::sim_queries), {"all", "matched"}));
    s.push_back(
        make("model.mta_clip.joint_query_norm",
             "one LayerNorm over mask and text queries before the decoder (the code); false = text queries only",
             in_mta_clip(&MtaClipConfig::joint_query_norm)));
    // [train]
    s.push_back(make("train.iters", "optimizer steps (iterations) to train", in_train(&TrainConfig::iters), 1, 1e9));
    s.push_back(
        make("train.lr", "base learning rate of AdamW (betas 0.9/0.999)", in_train(&TrainConfig::lr), 0, 10, true));
    s.push_back(make("train.backbone_lr_mult",
                     "learning rate multiplier of backbone.* parameters (mmseg custom_keys backbone lr_mult)",
                     in_train(&TrainConfig::backbone_lr_mult), 0, 100));
    s.push_back(make("train.weight_decay", "AdamW weight decay", in_train(&TrainConfig::weight_decay), 0, 10));
    s.push_back(make("train.no_decay_keys",
                     "parameters whose name contains one of these words get no weight decay (mmcv custom_keys "
                     "decay_mult 0; as there, the longest matching word wins, \"backbone\" included)",
                     in_train(&TrainConfig::no_decay_keys)));
    s.push_back(make("train.norm_decay_mult",
                     "weight decay multiplier of norm layers no key matches (mmengine norm_decay_mult)",
                     in_train(&TrainConfig::norm_decay_mult), 0, 10));
    s.push_back(make("train.warmup_iters", "linear warmup iterations (mmcv warmup = 'linear'); at most train.iters",
                     in_train(&TrainConfig::warmup_iters), 0, 1e9));
    s.push_back(make("train.warmup_ratio",
                     "learning rate at iteration 0 as a fraction of the schedule's (mmcv warmup_ratio)",
                     in_train(&TrainConfig::warmup_ratio), 0, 1, true));
    s.push_back(
        make("train.poly_power",
             "poly decay power: lr = (lr - min_lr) * (1 - iter / iters)^power + min_lr (mmcv PolyLrUpdaterHook)",
             in_train(&TrainConfig::poly_power), 0, 10));
    s.push_back(make("train.min_lr",
                     "learning rate at the last iteration, of every parameter group (mmcv: an absolute floor, also "
                     "under backbone_lr_mult); at most train.lr",
                     in_train(&TrainConfig::min_lr), 0, 10));
    s.push_back(make("train.grad_clip", "max global gradient norm (clip by total norm); 0 = off",
                     in_train(&TrainConfig::grad_clip), 0, kInf));
    s.push_back(make("train.eval_interval", "iterations between validations; 0 = only at the end",
                     in_train(&TrainConfig::eval_interval), 0, 1e9));
    s.push_back(make("train.checkpoint_interval", "iterations between checkpoints; 0 = only at the end",
                     in_train(&TrainConfig::checkpoint_interval), 0, 1e9));
    s.push_back(make("train.keep_checkpoints", "newest checkpoints/iter_<n>.pt kept (best.pt is never pruned)",
                     in_train(&TrainConfig::keep_checkpoints), 1, 1000));
    s.push_back(
        choice("train.save_best",
               "also keep checkpoints/best.pt, the validation scoring highest on this metric; needs data.val_store",
               in_train(&TrainConfig::save_best), {"none", "mIoU", "mAcc", "aAcc"}));
    s.push_back(make(
        "train.seed",
        "seed of every random draw: weight init, data order, augmentation and the model's draws (keyed per sample)",
        in_train(&TrainConfig::seed), 0, 9.0e18));
    s.push_back(choice("train.precision",
                       "fp32, or autocast bf16 / fp16 (fp16 adds dynamic loss scaling); bf16 and fp16 need a GPU",
                       in_train(&TrainConfig::precision), {"fp32", "bf16", "fp16"}));
    s.push_back(
        make("train.tf32", "TF32 for float32 matmuls and convolutions on NVIDIA GPUs", in_train(&TrainConfig::tf32)));
    s.push_back(make("train.cudnn_benchmark", "cuDNN times its convolution algorithms per shape and keeps the fastest",
                     in_train(&TrainConfig::cudnn_benchmark)));
    s.push_back(make("train.accumulate",
                     "micro-batches of data.batch_per_rank summed into each optimizer step (gradient accumulation)",
                     in_train(&TrainConfig::accumulate), 1, 1024));
    // [eval]
    s.push_back(choice("eval.mode",
                       "inference: whole image, or slide windows of eval.crop every eval.stride (mmseg test_cfg mode)",
                       in_eval(&EvalConfig::mode), {"whole", "slide"}));
    s.push_back(make("eval.crop", "slide window [H, W] in pixels", in_eval(&EvalConfig::crop), 16, 8192));
    s.push_back(make("eval.stride", "slide window stride [H, W] in pixels; at most eval.crop",
                     in_eval(&EvalConfig::stride), 1, 8192));
    s.push_back(make("eval.scales", "test scales (times data.scale) of the single-scale view set: mIoU, mAcc, aAcc",
                     in_eval(&EvalConfig::scales), 0, 8, true));
    s.push_back(make("eval.flip", "also infer each scale's mirrored image (softmaxes summed, as mmseg flip)",
                     in_eval(&EvalConfig::flip)));
    s.push_back(
        make("eval.batch",
             "test-time crops per forward pass (an image's and its mirror's windows); 1 = mmseg's one at a time",
             in_eval(&EvalConfig::batch), 1, 64));
    s.push_back(make("eval.ms_scales", "multi-scale + flip view set (mmseg --aug-test): mIoU_ms",
                     in_eval(&EvalConfig::ms_scales), 0, 8, true));
    s.push_back(
        choice("eval.ms_base",
               "what eval.ms_scales multiply: the image at data.scale (mmseg 0.x MultiScaleFlipAug) or the image "
               "as decoded (mmseg 1.x TestTimeAug scale_factor, MTA-CLIP)",
               in_eval(&EvalConfig::ms_base), {"scale", "image"}));
    s.push_back(make("eval.report_ms",
                     "the final validation of train and segrun eval also report mIoU_ms (or `eval --ms`)",
                     in_eval(&EvalConfig::report_ms)));
    // [dist]
    s.push_back(choice(
        "dist.device",
        "rank device: cuda = cuda:<local rank mod GPUs>; auto = cuda when built with CUDA and a GPU is seen, else cpu",
        in_dist(&DistConfig::device), {"auto", "cpu", "cuda"}));
    std::vector<std::string> backends{"auto"};
    for (const auto& [name, kind] : comm_backends()) backends.push_back(name);
    s.push_back(choice(
        "dist.backend",
        "gradient and SyncBN collectives: mpi or nccl; auto = nccl when every rank of a host has its own GPU, else mpi",
        in_dist(&DistConfig::backend), backends));
    s.push_back(make("dist.bucket_mb", "gradient all-reduce bucket size in MiB (PyTorch DDP bucket_cap_mb)",
                     in_dist(&DistConfig::bucket_mb), 0, 4096, true));
    s.push_back(make("dist.overlap",
                     "all-reduce gradient buckets during backward (nccl: started by backward; mpi: a thread)",
                     in_dist(&DistConfig::overlap)));
    s.push_back(make("dist.timeout_s",
                     "collective watchdog: seconds a collective may wait for the other ranks before the run fails",
                     in_dist(&DistConfig::timeout_s), 0, 1e6, true));
    // [log]
    s.push_back(make("log.interval", "iterations between progress lines and metrics.jsonl records",
                     in_log(&LogConfig::interval), 1, 1e9));
    s.push_back(choice("log.level",
                       "terminal log level (rank files log at info or more verbose; nothing logs below info)",
                       in_log(&LogConfig::level), {"trace", "debug", "info", "warn", "error"}));
    // [cluster.slurm]
    s.push_back(make("cluster.slurm.partition", "sbatch --partition; \"\" = the cluster's default",
                     in_slurm(&SlurmConfig::partition)));
    s.push_back(make("cluster.slurm.account", "sbatch --account; \"\" = none given", in_slurm(&SlurmConfig::account)));
    s.push_back(make("cluster.slurm.qos", "sbatch --qos; \"\" = none given", in_slurm(&SlurmConfig::qos)));
    s.push_back(make("cluster.slurm.time", "sbatch --time, e.g. \"1-00:00:00\"; \"\" = the partition's default",
                     in_slurm(&SlurmConfig::time)));
    s.push_back(
        make("cluster.slurm.mem", "sbatch --mem, e.g. \"64G\"; \"\" = the default", in_slurm(&SlurmConfig::mem)));
    s.push_back(
        make("cluster.slurm.constraint", "sbatch --constraint; \"\" = none", in_slurm(&SlurmConfig::constraint)));
    s.push_back(make("cluster.slurm.nodes", "nodes per run", in_slurm(&SlurmConfig::nodes), 1, 65536));
    s.push_back(make("cluster.slurm.gpus_per_node", "GPUs per node, one rank each; 0 = CPU nodes (one rank per task)",
                     in_slurm(&SlurmConfig::gpus_per_node), 0, 64));
    s.push_back(make("cluster.slurm.tasks_per_node", "tasks per node on CPU nodes; 0 = the run's ranks placed by Slurm",
                     in_slurm(&SlurmConfig::tasks_per_node), 0, 4096));
    s.push_back(make("cluster.slurm.cpus_per_task",
                     "sbatch --cpus-per-task (each rank's OMP_NUM_THREADS); 0 = Slurm's default",
                     in_slurm(&SlurmConfig::cpus_per_task), 0, 4096));
    s.push_back(make("cluster.slurm.max_parallel", "job array tasks at once (--array=...%M); 0 = no limit",
                     in_slurm(&SlurmConfig::max_parallel), 0, 100000));
    s.push_back(choice("cluster.slurm.launcher", "how the batch script starts the ranks: srun or mpirun",
                       in_slurm(&SlurmConfig::launcher), {"srun", "mpirun"}));
    s.push_back(choice("cluster.slurm.mpi", "srun --mpi=<plugin>", in_slurm(&SlurmConfig::mpi),
                       {"pmix", "pmix_v3", "pmix_v4", "pmi2", "none"}));
    s.push_back(choice("cluster.slurm.signal",
                       "preemption signal, sent signal_grace_s before the time limit; ranks checkpoint and exit 75",
                       in_slurm(&SlurmConfig::signal), {"USR1", "USR2", "TERM"}));
    s.push_back(make("cluster.slurm.signal_grace_s",
                     "seconds before the time limit the signal is sent (--signal=B:<signal>@<grace>)",
                     in_slurm(&SlurmConfig::signal_grace_s), 1, 65535));
    s.push_back(make("cluster.slurm.max_requeues", "a preempted run requeues itself at most this often",
                     in_slurm(&SlurmConfig::max_requeues), 0, 10000));
    return s;
  }();
  return fields;
}

std::string leaf_of(const std::string& key) {
  auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

std::string nearest_key(const std::string& key) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& f : schema()) {
    size_t d = std::min(edit_distance(key, f.key), edit_distance(leaf_of(key), leaf_of(f.key)) + 1);
    if (d < best_distance) {
      best_distance = d;
      best = f.key;
    }
  }
  return best;
}

const Field* find_field(const std::string& key) {
  for (const auto& f : schema())
    if (f.key == key) return &f;
  return nullptr;
}

bool is_section(const std::string& prefix) {
  for (const auto& f : schema())
    if (f.key.rfind(prefix + ".", 0) == 0) return true;
  return false;
}

std::string fmt_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void check_range(const Field& f, double v, const Origin& where) {
  if (std::isnan(v)) fail(where, f.key, "value is NaN");
  bool low = f.min_exclusive ? v <= f.min : v < f.min;
  if (low || v > f.max) {
    std::string lo = f.min_exclusive ? "(" : "[";
    fail(where, f.key,
         "value " + fmt_number(v) + " is out of range " + lo + fmt_number(f.min) + ", " +
             (std::isinf(f.max) ? std::string("inf") : fmt_number(f.max)) + "]");
  }
}

int64_t read_integer(const Field& f, const toml::node& node, const Origin& where) {
  // An override's digits that TOML could not read as a 64-bit integer arrive as a bare word.
  if (node.is_string()) {
    const std::string& text = node.as_string()->get();
    const size_t sign = !text.empty() && (text[0] == '-' || text[0] == '+') ? 1 : 0;
    if (text.size() >= sign + 19 && text.find_first_not_of("0123456789", sign) == std::string::npos)
      fail(where, f.key, "integer " + text + " does not fit in 64 bits");
  }
  if (!node.is_integer()) fail(where, f.key, "expected an integer, got " + toml_type_name(node));
  int64_t v = node.as_integer()->get();
  check_range(f, static_cast<double>(v), where);
  return v;
}

double read_number(const Field& f, const toml::node& node, const Origin& where) {
  double v;
  if (node.is_integer())
    v = static_cast<double>(node.as_integer()->get());
  else if (node.is_floating_point())
    v = node.as_floating_point()->get();
  else
    fail(where, f.key, "expected a number, got " + toml_type_name(node));
  check_range(f, v, where);
  return v;
}

const toml::array& read_array(const Field& f, const toml::node& node, const Origin& where, size_t exact) {
  if (!node.is_array()) fail(where, f.key, "expected an array, got " + toml_type_name(node));
  const auto& arr = *node.as_array();
  if (exact > 0 && arr.size() != exact)
    fail(where, f.key, "expected " + std::to_string(exact) + " values, got " + std::to_string(arr.size()));
  if (arr.empty()) fail(where, f.key, "expected a non-empty array");
  return arr;
}

void assign(const Field& f, Config& config, const toml::node& node, const Origin& where, const fs::path& base_dir) {
  std::visit(
      [&](auto&& ref) {
        using T = std::decay_t<decltype(ref(config))>;
        T& target = ref(config);
        if constexpr (std::is_same_v<T, int>) {
          target = static_cast<int>(read_integer(f, node, where));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          target = read_integer(f, node, where);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          int64_t v = read_integer(f, node, where);
          if (v < 0) fail(where, f.key, "must not be negative");
          target = static_cast<uint64_t>(v);
        } else if constexpr (std::is_same_v<T, double>) {
          target = read_number(f, node, where);
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!node.is_boolean()) fail(where, f.key, "expected true or false, got " + toml_type_name(node));
          target = node.as_boolean()->get();
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (!node.is_string()) fail(where, f.key, "expected a string, got " + toml_type_name(node));
          std::string v = node.as_string()->get();
          if (!f.choices.empty() && std::find(f.choices.begin(), f.choices.end(), v) == f.choices.end()) {
            std::string list;
            for (const auto& c : f.choices) list += (list.empty() ? "" : ", ") + c;
            fail(where, f.key, "'" + v + "' is not one of: " + list);
          }
          // "none" is a word, not a file (model.pretrained = "none": random weights on purpose).
          if (f.is_path && !v.empty() && v != "none" && fs::path(v).is_relative() && !base_dir.empty())
            v = (base_dir / v).lexically_normal().string();
          target = v;
        } else if constexpr (std::is_same_v<T, std::array<int, 2>>) {
          const auto& arr = read_array(f, node, where, 2);
          for (size_t i = 0; i < 2; ++i) target[i] = static_cast<int>(read_integer(f, *arr.get(i), where));
        } else if constexpr (std::is_same_v<T, std::array<double, 2>>) {
          const auto& arr = read_array(f, node, where, 2);
          std::array<double, 2> v{};
          for (size_t i = 0; i < 2; ++i) v[i] = read_number(f, *arr.get(i), where);
          if (v[0] > v[1]) fail(where, f.key, "expected [low, high] with low <= high");
          target = v;
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          const auto& arr = read_array(f, node, where, 0);
          std::vector<double> v;
          for (size_t i = 0; i < arr.size(); ++i) v.push_back(read_number(f, *arr.get(i), where));
          target = v;
        } else if constexpr (std::is_same_v<T, std::vector<int>>) {
          const auto& arr = read_array(f, node, where, 0);
          std::vector<int> v;
          for (size_t i = 0; i < arr.size(); ++i) v.push_back(static_cast<int>(read_integer(f, *arr.get(i), where)));
          target = v;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          // A list of words; [] is allowed (none).
          if (!node.is_array()) fail(where, f.key, "expected an array of strings, got " + toml_type_name(node));
          std::vector<std::string> v;
          for (const auto& item : *node.as_array()) {
            if (!item.is_string()) fail(where, f.key, "expected strings, got " + toml_type_name(item));
            v.push_back(item.as_string()->get());
            if (v.back().empty()) fail(where, f.key, "an empty string matches every name");
          }
          target = v;
        }
      },
      f.ref);
}

void unknown_key(const Origin& where, const std::string& key) {
  // A section given a value (eval={mode="slide"}, data="x"): its keys are what is set.
  if (is_section(key)) {
    for (const auto& f : schema())
      if (f.key.rfind(key + ".", 0) == 0)
        fail(where, key, "a section, not a key: set its keys one by one (e.g. " + f.key + "=...)");
  }
  fail(where, key, "unknown key (did you mean '" + nearest_key(key) + "'?)");
}

// `seen`: the keys this file has set so far, with where: TOML keeps "train.lr" (quoted, one key)
// and [train] lr apart, which both name train.lr here; the second is refused, not dropped.
void apply_table(const toml::table& table, const std::string& prefix, Config& config, const std::string& file,
                 const fs::path& base_dir, std::map<std::string, std::string>& seen) {
  for (const auto& [k, node] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    Origin where = origin_of(file, node);
    if (const Field* f = find_field(key)) {
      const auto [first, inserted] = seen.emplace(key, where.text);
      if (!inserted) fail(where, key, "given twice (also at " + first->second + ")");
      assign(*f, config, node, where, base_dir);
    } else if (node.is_table() && is_section(key)) {
      apply_table(*node.as_table(), key, config, file, base_dir, seen);
    } else if (node.is_table() && !node.as_table()->empty()) {
      // Unknown section: report its first key by full path, so the suggestion can fix the section.
      auto first = node.as_table()->begin();
      unknown_key(origin_of(file, first->second), key + "." + std::string(first->first.str()));
    } else if (prefix.empty() && key == "base") {
      // A sweep spec's `base` (its experiment config): the file given to config, train, ... is one.
      fail(where, key,
           "unknown key: a sweep spec names its base config so; give this file to `segrun sweep plan` or `sweep "
           "run`, or its base config to this command");
    } else {
      unknown_key(where, key);
    }
  }
}

void apply_override(const std::string& text, Config& config) {
  Origin where{"override '" + text + "'"};
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw ConfigError(where.text + ": expected key=value (e.g. train.lr=1e-4)");
  // "model.width = 8" (one shell word, TOML's spacing) is model.width=8.
  const auto trimmed = [](const std::string& s) {
    const size_t first = s.find_first_not_of(" \t");
    return first == std::string::npos ? std::string() : s.substr(first, s.find_last_not_of(" \t") - first + 1);
  };
  std::string key = trimmed(text.substr(0, eq));
  std::string value = trimmed(text.substr(eq + 1));
  const Field* f = find_field(key);
  if (!f) unknown_key(where, key);
  // 1e-4, .5, "bn", or a bare word: model.head=fpn; a string key's name=1 is "1".
  const toml::table parsed = command_line_value(value, std::holds_alternative<Ref<std::string>>(f->ref));
  assign(*f, config, *parsed.get("v"), where, fs::current_path());
}

// The last of `overrides` ("key=value") that set `key` (the one in force), nullptr when none did.
const std::string* override_of(const std::vector<std::string>& overrides, const std::string& key) {
  for (auto o = overrides.rbegin(); o != overrides.rend(); ++o)
    if (o->compare(0, key.size() + 1, key + "=") == 0) return &*o;
  return nullptr;
}

// Checks between keys. A failure names the file, or the override when the key it names was set
// on the command line (`overrides`: "key=value" texts).
void check_cross_fields(const Config& c, const std::string& origin, const std::vector<std::string>& overrides) {
  auto fail_cross = [&](const std::string& key, const std::string& what) {
    if (const std::string* o = override_of(overrides, key))
      throw ConfigError("override '" + *o + "': " + key + ": " + what);
    throw ConfigError(origin + ": " + key + ": " + what);
  };
  // The CLIP backbones downsample 32 times (ViT-B/16: patches of 16, then the pyramid's 1/32).
  for (int i = 0; i < 2; ++i) {
    if (c.data.crop[i] < 32) fail_cross("data.crop", "a side under 32 pixels leaves the backbone nothing to see");
    if (c.eval.mode == "slide" && c.eval.crop[i] < 32)
      fail_cross("eval.crop", "a side under 32 pixels leaves the backbone nothing to see");
  }
  // A ViT's position grid is the crop's (DenseCLIP: input_resolution = the crop).
  const BackboneInfo& backbone = backbone_info(c.model.backbone);
  switch (backbone.family) {
    case BackboneFamily::kResNet: break;
    case BackboneFamily::kVit:
      for (int i = 0; i < 2; ++i)  // a partial patch's pixels would be dropped without a word
        if (c.data.crop[i] % backbone.patch_size != 0)
          fail_cross("data.crop", std::to_string(c.data.crop[i]) + " is not a multiple of " + backbone.name +
                                      "'s patch size " + std::to_string(backbone.patch_size));
      if (c.model.norm == "frozen_bn")
        fail_cross("model.norm", "frozen_bn freezes a ResNet's BatchNorm; " + backbone.name +
                                     " has none (LayerNorm), and its pyramid's BN must train: use syncbn or bn");
      break;
  }
  if (c.train.warmup_iters > c.train.iters)
    fail_cross("train.warmup_iters", "warmup (" + std::to_string(c.train.warmup_iters) +
                                         ") is longer than train.iters (" + std::to_string(c.train.iters) + ")");
  if (c.train.min_lr > c.train.lr) fail_cross("train.min_lr", "min_lr is larger than train.lr");
  if (c.train.save_best != "none" && c.data.val_store.empty())
    fail_cross("train.save_best", "needs data.val_store: the best checkpoint is chosen by validation");
  if (c.model.width % 8 != 0) fail_cross("model.width", "must be a multiple of 8");
  const auto divisible = [&](const std::string& width_key, int width, const std::string& heads_key, int heads) {
    if (width % heads == 0) return;
    const bool heads_overridden = override_of(overrides, heads_key) != nullptr;
    fail_cross(heads_overridden ? heads_key : width_key,
               heads_overridden ? "must divide " + width_key + " = " + std::to_string(width)
                                : "must be divisible by " + heads_key + " = " + std::to_string(heads));
  };
  divisible("model.clip_sp.attn_dim", c.model.clip_sp.attn_dim, "model.clip_sp.heads", c.model.clip_sp.heads);
  divisible("model.text.width", c.model.text.width, "model.text.heads", c.model.text.heads);
  divisible("model.vit.width", c.model.vit.width, "model.vit.heads", c.model.vit.heads);
  const std::vector<int>& levels = c.model.vit.out_indices;
  if (levels.size() != 4)
    fail_cross("model.vit.out_indices", "needs 4 block indices (the 1/4, 1/8, 1/16, 1/32 levels)");
  for (size_t i = 0; i < levels.size(); ++i) {
    if (levels[i] >= c.model.vit.layers)
      fail_cross("model.vit.out_indices",
                 "index " + std::to_string(levels[i]) +
                     " is not a block of model.vit.layers = " + std::to_string(c.model.vit.layers) + " (0-based)");
    if (i > 0 && levels[i] <= levels[i - 1]) fail_cross("model.vit.out_indices", "indices must increase");
  }
  const HeadKind head = head_kind(c.model.head);
  if (head == HeadKind::kMask2Former || head == HeadKind::kMtaClip) {
    const Mask2FormerConfig& m2f = c.model.mask2former;
    divisible("model.mask2former.hidden_dim", m2f.hidden_dim, "model.mask2former.heads", m2f.heads);
    if (m2f.hidden_dim % 32 != 0)
      fail_cross("model.mask2former.hidden_dim",
                 std::to_string(m2f.hidden_dim) + " is not a multiple of 32 (GroupNorm(32) in the pixel decoder)");
  }
  if (head == HeadKind::kMtaClip && !c.model.mta_clip.text_enhanced && !c.model.mta_clip.contrastive)
    fail_cross("model.mta_clip.contrastive",
               "with text_enhanced = false too, nothing of MTA-CLIP is left: that is model.head = \"mask2former\"");
  if (c.model.text.prompt.find("{}") == std::string::npos)
    fail_cross("model.text.prompt", "must contain {} (the class name's place)");
  for (int i = 0; i < 2; ++i)
    if (c.eval.stride[i] > c.eval.crop[i])
      fail_cross("eval.stride", "stride larger than eval.crop leaves pixels unpredicted");
}

Config parse_table(const toml::table& table, const std::string& origin, const std::vector<std::string>& overrides,
                   const fs::path& base_dir) {
  Config config;
  std::map<std::string, std::string> seen;
  apply_table(table, "", config, origin, base_dir, seen);
  for (const auto& o : overrides) apply_override(o, config);
  check_cross_fields(config, origin, overrides);
  config.overrides = overrides;
  return config;
}

toml::table& section(toml::table& root, const std::string& dotted) {
  toml::table* t = &root;
  std::stringstream ss(dotted);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (!t->contains(part)) t->insert(part, toml::table{});
    t = t->get(part)->as_table();
  }
  return *t;
}

}  // namespace

Config parse_config(const std::string& toml_text, const std::string& origin,
                    const std::vector<std::string>& overrides) {
  toml::table table;
  try {
    table = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << origin << ":" << e.source().begin.line << ": syntax error: " << e.description();
    throw ConfigError(os.str());
  }
  Config config = parse_table(table, origin, overrides, fs::path{});
  return config;
}

std::string default_run_dir(const Config& config) {
  const fs::path name(config.name);
  bool inside = !config.name.empty() && name.is_relative();
  for (const fs::path& part : name) inside = inside && part != "." && part != "..";
  SEGRUN_CHECK(inside, ConfigError,
               origin_of(config, "name") << ": name: '" << config.name
                                         << "' names the run's folder below runs/: no absolute path, '.' or '..' "
                                            "(or give --run-dir)");
  return (fs::path("runs") / name).string();
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw ConfigError(path + ": config file not found (or not a regular file)");
  // toml++ reports an unreadable file as a syntax error on line 0.
  if (::access(path.c_str(), R_OK) != 0) throw ConfigError(path + ": cannot be read: " + std::strerror(errno));
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << path << ":" << e.source().begin.line << ": syntax error: " << e.description();
    throw ConfigError(os.str());
  }
  fs::path base_dir = fs::absolute(fs::path(path)).parent_path();
  Config config = parse_table(table, path, overrides, base_dir);
  config.source = fs::absolute(path).string();
  if (config.name.empty()) config.name = fs::path(path).stem().string();
  return config;
}

namespace {

// Inserts field `f`'s value in `config` into `table` under `leaf`, as TOML.
void insert_value(const Field& f, Config& config, toml::table& table, const std::string& leaf) {
  std::visit(
      [&](auto&& ref) {
        using T = std::decay_t<decltype(ref(config))>;
        const T& v = ref(config);
        if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
          table.insert(leaf, static_cast<int64_t>(v));
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          table.insert(leaf, static_cast<int64_t>(v));
        } else if constexpr (std::is_same_v<T, double> || std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
          table.insert(leaf, v);
        } else if constexpr (std::is_same_v<T, std::array<int, 2>>) {
          table.insert(leaf, toml::array{static_cast<int64_t>(v[0]), static_cast<int64_t>(v[1])});
        } else {
          toml::array arr;
          for (const auto& x : v) arr.push_back(x);
          table.insert(leaf, arr);
        }
      },
      f.ref);
}

// TOML text with every float written as short as reads back the same value ("0.1", "1e-06"),
// not toml++'s 17 significant digits ("0.10000000000000001"); strings are left alone.
std::string with_short_floats(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  char quote = 0;  // inside a "..." or '...' string
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (quote) {
      out += c;
      if (c == '\\' && quote == '"' && i + 1 < text.size())
        out += text[++i];
      else if (c == quote)
        quote = 0;
      ++i;
      continue;
    }
    if (c == '"' || c == '\'') quote = c;
    const bool starts_number = (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+') &&
                               (out.empty() || std::string(" =[,\n").find(out.back()) != std::string::npos);
    if (!starts_number) {
      out += c;
      ++i;
      continue;
    }
    size_t end = i + 1;
    while (end < text.size() && std::string("0123456789.eE+-").find(text[end]) != std::string::npos) ++end;
    const std::string token = text.substr(i, end - i);
    char* parsed_end = nullptr;
    const double v = std::strtod(token.c_str(), &parsed_end);
    if (token.find_first_of(".eE") == std::string::npos || parsed_end != token.c_str() + token.size()) {
      out += token;
    } else {
      char buf[64];
      std::string shortest(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
      if (shortest.find_first_of(".e") == std::string::npos) shortest += ".0";  // still a float
      out += shortest;
    }
    i = end;
  }
  return out;
}

}  // namespace

std::string to_toml(const Config& input) {
  Config config = input;  // accessors take non-const refs
  toml::table root;
  for (const auto& f : schema()) {
    auto dot = f.key.rfind('.');
    toml::table& t = dot == std::string::npos ? root : section(root, f.key.substr(0, dot));
    insert_value(f, config, t, leaf_of(f.key));
  }
  std::ostringstream os;
  os << "# segrun resolved config: every key, defaults included\n" << root << "\n";
  return with_short_floats(os.str());
}

std::vector<std::pair<std::string, std::string>> config_values(const Config& input) {
  Config config = input;
  std::vector<std::pair<std::string, std::string>> values;
  for (const auto& f : schema()) {
    toml::table one;
    insert_value(f, config, one, "v");
    std::ostringstream os;
    os << one;  // "v = <value>"
    values.emplace_back(f.key, with_short_floats(os.str().substr(4)));
  }
  return values;
}

std::string origin_of(const Config& config, const std::string& key) {
  if (const std::string* o = override_of(config.overrides, key)) return "override '" + *o + "'";
  return config.source.empty() ? "config" : config.source;
}

std::string origin_of_message(const Config& config, const std::string& message) {
  for (auto o = config.overrides.rbegin(); o != config.overrides.rend(); ++o) {
    const std::string key = o->substr(0, o->find('='));
    if (!key.empty() && message.find(key) != std::string::npos) return "override '" + *o + "'";
  }
  return config.source.empty() ? "config" : config.source;
}

std::vector<std::string> missing_inputs(const Config& config) {
  std::vector<std::string> missing;
  for (const auto& [key, path] :
       {std::pair<const char*, const std::string&>{"data.store", config.data.store},
        std::pair<const char*, const std::string&>{"data.val_store", config.data.val_store}}) {
    std::error_code ec;
    if (path.empty() || std::filesystem::is_regular_file(path, ec)) continue;  // "" or a manifest.json
    if (!std::filesystem::is_directory(path, ec))
      missing.push_back(std::string(key) + " = " + path + ": no such store folder");
    else if (!std::filesystem::exists(std::filesystem::path(path) / "manifest.json", ec))
      missing.push_back(std::string(key) + " = " + path +
                        ": not a store (no manifest.json; `segrun data pack` makes a store of a dataset folder)");
  }
  std::error_code ec;
  const std::string& weights = config.model.pretrained;
  if (!weights.empty() && weights != "none" && !std::filesystem::is_regular_file(weights, ec))
    missing.push_back("model.pretrained = " + weights +
                      ": no such file (OpenAI CLIP's RN50.pt, RN101.pt, ...; or "
                      "\"none\" for random weights)");
  return missing;
}

void require_inputs(const Config& config) {
  const std::vector<std::string> missing = missing_inputs(config);
  if (!missing.empty()) throw ConfigError(origin_of_message(config, missing.front()) + ": " + missing.front());
}

namespace {

// The type column of the reference: TOML's words, shortened.
std::string type_name(const Field& f) {
  return std::visit(
      [&](auto&& ref) -> std::string {
        using T = std::decay_t<decltype(ref(std::declval<Config&>()))>;
        if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t>)
          return "int";
        else if constexpr (std::is_same_v<T, double>)
          return "float";
        else if constexpr (std::is_same_v<T, bool>)
          return "bool";
        else if constexpr (std::is_same_v<T, std::string>)
          return f.is_path ? "path" : "string";
        else if constexpr (std::is_same_v<T, std::array<int, 2>>)
          return "int[2]";
        else if constexpr (std::is_same_v<T, std::array<double, 2>>)
          return "float[2]";
        else if constexpr (std::is_same_v<T, std::vector<int>>)
          return "int[]";
        else if constexpr (std::is_same_v<T, std::vector<double>>)
          return "float[]";
        else
          return "string[]";
      },
      f.ref);
}

// A bound as a person writes it: "1024", "0.0001", "1e+09" for large ones, "inf".
std::string bound_text(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == std::floor(v) && std::fabs(v) < 1e7) return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  return std::string(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

}  // namespace

std::vector<KeyInfo> config_key_infos() {
  const auto defaults = config_values(Config{});
  std::vector<KeyInfo> infos;
  for (size_t i = 0; i < schema().size(); ++i) {
    const Field& f = schema()[i];
    KeyInfo info;
    info.key = f.key;
    info.type = type_name(f);
    info.default_value = defaults[i].second;
    info.min = f.min;
    info.max = f.max;
    info.min_exclusive = f.min_exclusive;
    info.choices = f.choices;
    info.help = f.help;
    infos.push_back(std::move(info));
  }
  return infos;
}

std::string key_range_text(const KeyInfo& info) {
  if (!info.choices.empty()) return join(info.choices, " | ");
  if (std::isinf(info.min) && std::isinf(info.max)) return "";
  return (info.min_exclusive || std::isinf(info.min) ? "(" : "[") + bound_text(info.min) + ", " + bound_text(info.max) +
         (std::isinf(info.max) ? ")" : "]");
}

}  // namespace segrun
