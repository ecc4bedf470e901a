#pragma once
// Helpers for the models tests that compare against a Python reference: per-process temp paths in
// the build tree, byte files, running a reference script under /usr/bin/python3 with a
// torch::pickle_save dict and reading its torch.save dict back, and a relative closeness check.
// Single-threaded test code; failures are gtest failures (or std::runtime_error where a value
// must be returned).

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace segrun::models::test_io {

inline std::string temp_path(const std::string& stem, const std::string& extension = ".pt") {
  return std::string(SEGRUN_TEST_BINARY_DIR) + "/models_" + stem + "_" + std::to_string(::getpid()) + extension;
}

inline void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.good()) throw std::runtime_error("cannot write " + path);
}

inline std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) throw std::runtime_error("cannot read " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs `/usr/bin/python3 <source>/tests/models/<script> args...`; throws if it fails.
inline void run_reference(const std::string& script, const std::vector<std::string>& args) {
  std::string command = std::string(SEGRUN_TEST_PYTHON) + " " + SEGRUN_TEST_SOURCE_DIR + "/tests/models/" + script;
  for (const auto& arg : args) command += " '" + arg + "'";
  if (std::system(command.c_str()) != 0) throw std::runtime_error("reference failed: " + command);
}

inline std::map<std::string, torch::Tensor> load_tensor_dict(const std::string& path) {
  const c10::IValue loaded = torch::pickle_load(read_bytes(path));
  if (!loaded.isGenericDict()) throw std::runtime_error(path + " is not a dict");
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : loaded.toGenericDict()) out[item.key().toStringRef()] = item.value().toTensor();
  return out;
}

// Writes `input` to a temp file, runs `script IN OUT`, returns OUT's tensors; temp files removed.
inline std::map<std::string, torch::Tensor> run_tensor_reference(const std::string& script,
                                                                 const c10::Dict<std::string, at::Tensor>& input) {
  const std::string in_path = temp_path("ref_in"), out_path = temp_path("ref_out");
  write_bytes(in_path, torch::pickle_save(c10::IValue(input)));
  run_reference(script, {in_path, out_path});
  std::map<std::string, torch::Tensor> out = load_tensor_dict(out_path);
  std::remove(in_path.c_str());
  std::remove(out_path.c_str());
  return out;
}

// An archive a reference script writes (`script ARCHIVE EXPECTED args...`) with the tensors it
// expects from it, made once by a test suite's SetUpTestSuite; the files go with the object.
struct ReferenceArchive {
  ReferenceArchive(const std::string& stem, const std::string& script, const std::vector<std::string>& args)
      : path(temp_path(stem + "_archive")) {
    const std::string expected_path = temp_path(stem + "_expected");
    std::vector<std::string> all{path, expected_path};
    all.insert(all.end(), args.begin(), args.end());
    run_reference(script, all);
    expected = load_tensor_dict(expected_path);
    std::remove(expected_path.c_str());
  }
  ~ReferenceArchive() { std::remove(path.c_str()); }
  ReferenceArchive(const ReferenceArchive&) = delete;
  ReferenceArchive& operator=(const ReferenceArchive&) = delete;

  const std::string path;
  std::map<std::string, torch::Tensor> expected;
};

// max |actual - expected| <= tolerance * max |expected|.
inline void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what,
                         double tolerance = 1e-4) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double scale = expected.abs().max().item<double>();
  ASSERT_GT(scale, 0.0) << what << ": reference is all zeros";
  const double max_err = (actual.to(torch::kDouble) - expected.to(torch::kDouble)).abs().max().item<double>();
  EXPECT_LE(max_err, tolerance * scale) << what << ": max |diff| " << max_err << " vs max |ref| " << scale;
}

// Every BatchNorm layer gets non-trivial affine parameters and running statistics, so the
// residual branches (bn3 starts at zero in CLIP's init) and the eval-mode normalization count.
inline void randomize_norms(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& module : model.modules()) {
    if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.normal_(0.0, 0.1);
      bn->running_mean.normal_(0.0, 0.1);
      bn->running_var.uniform_(0.5, 1.5);
    }
  }
}

}  // namespace segrun::models::test_io
