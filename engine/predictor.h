#pragma once
// `segrun predict`: a trained model on images of the user's own (mmseg's inference_model and
// image_demo). Each image goes through the config's test pipeline (keep-ratio resize to
// data.scale, normalization) and the views of [eval] (eval.scales with eval.flip, or with
// multi_scale eval.ms_scales each also mirrored), and the argmax at the image's own size is written
//   <out>/<stem>.png          train ids, uint8 (255 never: every pixel gets a class),
//   <out>/color/<stem>.png    the layout's palette,
//   <out>/overlay/<stem>.jpg  the palette over the image, half opaque,
//   <out>/label_ids/<stem>.png with label_ids: the dataset's own label values (Cityscapes'
//                             label ids, what its benchmark server and cityscapesScripts read;
//                             ADE20K's 1-based class indices, as its annotations hold them).
// For an image packed into a validation store these are the very files `segrun eval --save-pred
// DIR --color` writes for its record (the same decoding, pipeline and score_views).
// The model is built for data.layout's classes (the classes `data pack` writes into a store) and
// loaded from the checkpoint, whose model signature must match the config; no store is read.
// Ranks: rank r predicts images r, r + world, ... of the sorted list; every rank checks the
// inputs and the output folder, then one barrier, then each writes its own images' files.
// Errors, each one line naming what is wrong. Before anything is written: ConfigError for an
// input that does not exist, a folder without image files, two images with the same stem (their
// files would overwrite each other) or an --out folder that exists and is not empty (nothing is
// overwritten); the checkpoint's errors (engine/checkpoint.h). When an image's turn comes: a
// DataError naming it when it cannot be decoded, an IoError naming a file that cannot be written
// (the files of the images before it stay). Not thread-safe (one model, one thread).

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "dist/rank_context.h"

namespace segrun::engine {

struct PredictRequest {
  std::vector<std::string> inputs;  // image files and folders of image files
  std::string out_dir;
  bool multi_scale = false;    // eval.ms_scales + flip (mmseg --aug-test) instead of eval.scales
  bool show_progress = false;  // rank 0 shows its images' progress (core/progress.h)
  bool label_ids = false;      // also <out>/label_ids/<stem>.png in the dataset's own label values
};

struct PredictOutcome {
  int64_t images = 0;       // over every rank
  int64_t rank_images = 0;  // this rank's
  int64_t iteration = 0;    // the checkpoint's next iteration (= iterations trained)
  double seconds = 0;       // this rank's time from the first image to the last file written
};

// The image files of `inputs`, in order: a file as given (whatever its name; decoding decides), a
// folder's files named *.jpg, *.jpeg, *.png or *.bmp (any case; in its subfolders too, as
// Cityscapes' leftImg8bit/test/<city>/) sorted by path; a
// file reached twice is listed once. ConfigError as above (inputs that do not exist, an empty folder, a stem seen
// twice, no input).
std::vector<std::string> list_predict_images(const std::vector<std::string>& inputs);

PredictOutcome predict_images(const Config& config, const dist::RankContext& context, const std::string& checkpoint,
                              const PredictRequest& request);

}  // namespace segrun::engine
