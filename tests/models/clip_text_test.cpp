// Tests of the CLIP text side of segrun_models: the BPE tokenizer against README ids and an
// independent Python BPE (reference_clip_tokenizer.py) on ~50 strings plus every ADE20K and
// Cityscapes prompt; the text transformer against an independent PyTorch reference
// (reference_clip_text.py) and the OpenAI key table; the import from a tiny TorchScript archive
// (make_clip_text_archive.py); the class-embedding cache in memory and on disk.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/classes.h"
#include "models/clip/clip_text.h"
#include "models/clip/text_embeddings.h"
#include "models/clip/tokenizer.h"
#include "tests/models/torch_test_io.h"

namespace segrun::models {
namespace {

using test_io::expect_close;
using test_io::temp_path;

const ClipTokenizer& shared_tokenizer() {
  static const ClipTokenizer tokenizer;
  return tokenizer;
}

template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const ModelError& e) {
    return e.what();
  }
  return "<no ModelError>";
}

// ---- tokenizer -----------------------------------------------------------------------------------

TEST(ClipTokenizer, ReadmeIdsAndPadding) {
  const ClipTokenizer& tokenizer = shared_tokenizer();
  EXPECT_EQ(tokenizer.vocab_size(), 49408);
  torch::Tensor ids = tokenizer.tokenize({"a photo of a cat.", "a photo of a wall."});
  ASSERT_EQ(ids.sizes(), torch::IntArrayRef({2, 77}));
  ASSERT_EQ(ids.scalar_type(), torch::kLong);
  const std::vector<int64_t> cat{49406, 320, 1125, 539, 320, 2368, 269, 49407};
  const std::vector<int64_t> wall{49406, 320, 1125, 539, 320, 2569, 269, 49407};
  for (size_t k = 0; k < 77; ++k) {
    EXPECT_EQ(ids[0][static_cast<int64_t>(k)].item<int64_t>(), k < cat.size() ? cat[k] : 0) << k;
    EXPECT_EQ(ids[1][static_cast<int64_t>(k)].item<int64_t>(), k < wall.size() ? wall[k] : 0) << k;
  }
  EXPECT_EQ(tokenizer.decode({320, 1125, 539, 320, 2368, 269}), "a photo of a cat . ");
  EXPECT_EQ(tokenizer.encode("A   PHOTO\tof a\n cat."), tokenizer.encode("a photo of a cat."));
}

TEST(ClipTokenizer, CleaningAndWordSplitByHand) {
  EXPECT_EQ(clean_clip_text("  Hello&amp;World \t\n  Again  "), "hello&world again");
  EXPECT_EQ(clean_clip_text("&amp;lt;b&amp;gt;"), "<b>");  // unescaped twice
  EXPECT_EQ(clean_clip_text("&#39;x&#x41;&copy 1&zzz;"), "'xa\u00a9 1&zzz;");
  EXPECT_EQ(clean_clip_text("non\u00a0breaking\u3000space"), "non breaking space");
  EXPECT_EQ(clean_clip_text("\u00c9COLE \u0394\u0399\u0391 \u0416"), "\u00e9cole \u03b4\u03b9\u03b1 \u0436");
  const std::vector<std::string> words = split_clip_words("don't stop abc123 hi!!! you <|endoftext|>x caf\u00e9_");
  const std::vector<std::string> expected{"don", "'t",  "stop", "abc",           "1", "2",         "3",
                                          "hi",  "!!!", "you",  "<|endoftext|>", "x", "caf\u00e9", "_"};
  EXPECT_EQ(words, expected);
  EXPECT_EQ(split_clip_words("\u6771\u4eac \U0001F600!"), (std::vector<std::string>{"\u6771\u4eac", "\U0001F600!"}));
}

TEST(ClipTokenizer, MatchesIndependentPythonBpe) {
  std::vector<std::string> texts{
      "a photo of a cat.",
      "Hello, World!",
      "  multiple   spaces\tand\nnewlines  ",
      "don't you're we've I'm they'll he'd it's",
      "DON'T SHOUT",
      "rock'n'roll ''s",
      "numbers 1234567890 and 3.14159",
      "x1y2z3",
      "under_score snake_case_name __init__",
      "e-mail: someone@example.com",
      "https://github.com/openai/CLIP",
      "price: $5.99 (approx.)",
      "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot;",
      "&amp;amp; double-escaped &amp;quot;",
      "&#39;single&#39; &#x41;&#66;C &#128;",
      "fish&chips &ampersand &zzz; &copy 2021 &apos;",
      "non\u00a0breaking&nbsp;space",
      "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e",
      "na\u00efve fa\u00e7ade \u00c6r\u00f8sk\u00f8bing",
      "\u00c0\u00c9\u00ce\u00d5\u00dc uppercase accents",
      "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03b3\u03c1\u03ac\u03bc\u03bc\u03b1\u03c4\u03b1",
      "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
      "\u6771\u4eac\u30bf\u30ef\u30fc \u3068 \u5bcc\u58eb\u5c71",
      "\ud55c\uad6d\uc5b4 \ubb38\uc7a5",
      "emoji \U0001F600\U0001F44D party \U0001F389",
      "\u201ccurly quotes\u201d \u2014 and \u2013 dashes\u2026",
      "tab\tseparated\tvalues",
      "<|startoftext|>hello<|endoftext|>",
      "supercalifragilisticexpialidocious",
      "pneumonoultramicroscopicsilicovolcanoconiosis",
      "a",
      "",
      "!!!",
      "?\?\?!!!...",
      "100%",
      "#hashtag @mention",
      "1st 2nd 3rd 4th",
      "C++ and C# and F#",
      "The Quick Brown Fox Jumps Over The Lazy Dog.",
      "semantic segmentation of street scenes",
      "\u00ff and \u0178",
      "\u03a9mega \u00b5 micro stra\u00dfe",
      "cafe\u0301 zero\u200bwidth",
      "\ufb01 ligature",
      "\uff21\uff22\uff23\uff11\uff12\uff13",
      "\u0663\u0664\u0665 arabic digits",
      "1,000,000 people",
      "a photo of a crt screen.",
      "A PHOTO OF A Chest Of Drawers.",
      "mixedCASEWords and CamelCase",
  };
  for (data::Layout layout : {data::Layout::kAde20k, data::Layout::kCityscapes}) {
    for (const auto& name : data::class_names(layout)) texts.push_back("a photo of a " + name + ".");
  }
  ASSERT_EQ(texts.size(), 50u + 150u + 19u);

  const std::string in_path = temp_path("tok_in", ".json"), out_path = temp_path("tok_out", ".json");
  {
    std::ofstream out(in_path);
    out << nlohmann::json(texts).dump();
  }
  test_io::run_reference("reference_clip_tokenizer.py", {default_clip_vocab_path(), in_path, out_path});
  std::ifstream in(out_path);
  const nlohmann::json expected = nlohmann::json::parse(in);
  std::remove(in_path.c_str());
  std::remove(out_path.c_str());
  ASSERT_EQ(expected.size(), texts.size());
  const ClipTokenizer& tokenizer = shared_tokenizer();
  size_t non_trivial = 0;
  for (size_t k = 0; k < texts.size(); ++k) {
    const std::vector<int64_t> want = expected[k].get<std::vector<int64_t>>();
    EXPECT_EQ(tokenizer.encode(texts[k]), want) << "text " << k << ": '" << texts[k] << "'";
    non_trivial += want.size() > 1;
  }
  EXPECT_GT(non_trivial, 200u);
  // Every prompt fits CLIP's context, and row k of tokenize() is SOT + the reference ids + EOT.
  torch::Tensor ids = tokenizer.tokenize(std::vector<std::string>(texts.end() - 169, texts.end()));
  const std::vector<int64_t> first = expected[50].get<std::vector<int64_t>>();
  EXPECT_EQ(ids[0][0].item<int64_t>(), ClipTokenizer::kStartOfText);
  for (size_t k = 0; k < first.size(); ++k) EXPECT_EQ(ids[0][static_cast<int64_t>(k + 1)].item<int64_t>(), first[k]);
  EXPECT_EQ(ids[0][static_cast<int64_t>(first.size() + 1)].item<int64_t>(), ClipTokenizer::kEndOfText);
}

TEST(ClipTokenizer, TooLongTextThrowsUnlessTruncating) {
  const ClipTokenizer& tokenizer = shared_tokenizer();
  std::string text;
  for (int k = 0; k < 80; ++k) text += "word ";
  const std::string message = error_message([&] { tokenizer.tokenize({"short", text}); });
  EXPECT_NE(message.find("word word"), std::string::npos) << message;
  EXPECT_NE(message.find("82 tokens"), std::string::npos) << message;
  torch::Tensor ids = tokenizer.tokenize({text}, 77, /*truncate=*/true);
  EXPECT_EQ(ids[0][0].item<int64_t>(), ClipTokenizer::kStartOfText);
  EXPECT_EQ(ids[0][76].item<int64_t>(), ClipTokenizer::kEndOfText);
  EXPECT_EQ(ids[0][75].item<int64_t>(), tokenizer.encode("word")[0]);
  // Exactly 75 ids fit.
  std::string fits;
  for (int k = 0; k < 75; ++k) fits += "word ";
  EXPECT_EQ(tokenizer.tokenize({fits})[0][76].item<int64_t>(), ClipTokenizer::kEndOfText);
}

TEST(ClipTokenizer, ErrorsNameTheFileOrText) {
  const std::string missing = temp_path("no_vocab", ".txt.gz");
  std::string message = error_message([&] { ClipTokenizer tokenizer(missing); });
  EXPECT_NE(message.find(missing), std::string::npos) << message;
  const std::string truncated = temp_path("short_vocab", ".txt.gz");
  {
    std::ofstream out(truncated, std::ios::binary);
    out << "not gzip\nx y\n";
  }
  message = error_message([&] { ClipTokenizer tokenizer(truncated); });
  EXPECT_NE(message.find(truncated), std::string::npos) << message;
  EXPECT_NE(message.find("merges"), std::string::npos) << message;
  std::remove(truncated.c_str());
  message = error_message([&] { shared_tokenizer().encode("bad \xff byte"); });
  EXPECT_NE(message.find("invalid UTF-8"), std::string::npos) << message;
}

// ---- text encoder --------------------------------------------------------------------------------

ClipTextOptions tiny_text_options() {
  ClipTextOptions options;
  options.context_length = 20;
  options.vocab_size = 120;
  options.width = 64;
  options.heads = 2;
  options.layers = 2;
  options.embed_dim = 48;
  return options;
}

void randomize_affine(ClipTextEncoderImpl& encoder) {
  torch::NoGradGuard no_grad;
  for (auto& item : encoder.named_parameters()) {
    const std::string& key = item.key();
    if (key.find("ln_") != std::string::npos && key.find(".weight") != std::string::npos)
      item.value().uniform_(0.5, 1.5);
    if (key.find("bias") != std::string::npos) item.value().normal_(0.0, 0.1);
  }
  encoder.positional_embedding.normal_(0.0, 0.3);
}

// Rows: SOT, words, EOT (the largest id), then zeros; eot_positions give each row's EOT index.
torch::Tensor make_ids(const ClipTextOptions& options, const std::vector<int64_t>& eot_positions) {
  const auto rows = static_cast<int64_t>(eot_positions.size());
  torch::Tensor ids = torch::zeros({rows, options.context_length}, torch::kLong);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t eot = eot_positions[static_cast<size_t>(r)];
    ids[r][0] = options.vocab_size - 2;
    ids[r].slice(0, 1, eot).copy_(torch::randint(1, options.vocab_size - 2, {eot - 1}, torch::kLong));
    ids[r][eot] = options.vocab_size - 1;
  }
  return ids;
}

TEST(ClipTextEncoder, MatchesIndependentPytorchReference) {
  torch::manual_seed(3);
  const ClipTextOptions options = tiny_text_options();
  ClipTextEncoder encoder(options);
  randomize_affine(*encoder);
  encoder->eval();
  const torch::Tensor ids = make_ids(options, {3, 6, 9, 1, options.context_length - 1, 12});

  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& item : encoder->named_parameters()) dict.insert("text." + item.key(), item.value().detach().clone());
  dict.insert("ids", ids);
  dict.insert("cfg.context_length", torch::tensor(options.context_length));
  dict.insert("cfg.vocab_size", torch::tensor(options.vocab_size));
  dict.insert("cfg.width", torch::tensor(options.width));
  dict.insert("cfg.heads", torch::tensor(options.heads));
  dict.insert("cfg.layers", torch::tensor(options.layers));
  dict.insert("cfg.embed_dim", torch::tensor(options.embed_dim));
  const auto ref = test_io::run_tensor_reference("reference_clip_text.py", dict);

  torch::NoGradGuard no_grad;
  const torch::Tensor all = encoder->forward(ids);
  EXPECT_EQ(all.sizes(), torch::IntArrayRef({6, 48}));
  expect_close(all, ref.at("features"), "text features, full context");
  // Short rows only: the transformer runs on 10 positions, same result as the full context.
  const torch::Tensor short_rows = torch::tensor({0, 1, 2, 3}, torch::kLong);
  expect_close(encoder->forward(ids.index_select(0, short_rows)), ref.at("features").index_select(0, short_rows),
               "text features, context cut at the last EOT");
  // Tokens after EOT do not matter (causal mask).
  torch::Tensor noisy = ids.clone();
  noisy[0].slice(0, 4).fill_(5);
  expect_close(encoder->forward(noisy.slice(0, 0, 1)), ref.at("features").slice(0, 0, 1), "tokens after EOT");
}

TEST(ClipTextEncoder, RealSizeMatchesOpenAiKeyTable) {
  ClipTextEncoder encoder(clip_text_options_for("clip_rn50"));
  std::map<std::string, std::vector<int64_t>> shapes;
  int64_t total = 0;
  for (const auto& item : encoder->named_parameters()) {
    shapes[item.key()] = item.value().sizes().vec();
    total += item.value().numel();
  }
  for (const auto& item : encoder->named_buffers()) ADD_FAILURE() << "unexpected buffer " << item.key();
  EXPECT_EQ(shapes.size(), 5u + 12u * 12u);
  EXPECT_EQ(shapes.at("token_embedding.weight"), (std::vector<int64_t>{49408, 512}));
  EXPECT_EQ(shapes.at("positional_embedding"), (std::vector<int64_t>{77, 512}));
  EXPECT_EQ(shapes.at("text_projection"), (std::vector<int64_t>{512, 1024}));
  EXPECT_EQ(shapes.at("ln_final.weight"), (std::vector<int64_t>{512}));
  for (int b = 0; b < 12; ++b) {
    const std::string p = "transformer.resblocks." + std::to_string(b) + ".";
    EXPECT_EQ(shapes.at(p + "attn.in_proj_weight"), (std::vector<int64_t>{1536, 512}));
    EXPECT_EQ(shapes.at(p + "attn.in_proj_bias"), (std::vector<int64_t>{1536}));
    EXPECT_EQ(shapes.at(p + "attn.out_proj.weight"), (std::vector<int64_t>{512, 512}));
    EXPECT_EQ(shapes.at(p + "attn.out_proj.bias"), (std::vector<int64_t>{512}));
    EXPECT_EQ(shapes.at(p + "ln_1.bias"), (std::vector<int64_t>{512}));
    EXPECT_EQ(shapes.at(p + "mlp.c_fc.weight"), (std::vector<int64_t>{2048, 512}));
    EXPECT_EQ(shapes.at(p + "mlp.c_fc.bias"), (std::vector<int64_t>{2048}));
    EXPECT_EQ(shapes.at(p + "mlp.c_proj.weight"), (std::vector<int64_t>{512, 2048}));
    EXPECT_EQ(shapes.at(p + "ln_2.weight"), (std::vector<int64_t>{512}));
  }
  // 49408*512 + 77*512 + 12*(1536*513 + 512*513 + 2048*513 + 512*2049 + 4*512) + 2*512 + 512*1024
  EXPECT_EQ(total, 63690240);
  EXPECT_EQ(clip_text_options_for("clip_rn101").embed_dim, 512);
  EXPECT_THROW(clip_text_options_for("vit_b16"), ConfigError);
  ClipTextOptions bad = tiny_text_options();
  bad.heads = 3;
  EXPECT_NE(error_message([&] { ClipTextEncoder e(bad); }).find("heads"), std::string::npos);
  EXPECT_NE(error_message([&] {
              encoder->forward(torch::zeros({1, 76}, torch::kLong));
            }).find("[N, 77]"),
            std::string::npos);
}

// ---- weight import -------------------------------------------------------------------------------

class ClipTextImport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = new test_io::ReferenceArchive("text", "make_clip_text_archive.py", {"50", "32", "2", "2", "24"});
  }
  static void TearDownTestSuite() { delete reference_; }
  static const std::string& archive() { return reference_->path; }
  static const std::map<std::string, torch::Tensor>& expected() { return reference_->expected; }
  static ClipTextOptions archive_options() {
    ClipTextOptions options;
    options.context_length = 16;  // the archive has 77 positions
    options.vocab_size = 50;
    options.width = 32;
    options.heads = 2;
    options.layers = 2;
    options.embed_dim = 24;
    return options;
  }
  static test_io::ReferenceArchive* reference_;
};
test_io::ReferenceArchive* ClipTextImport::reference_ = nullptr;

TEST_F(ClipTextImport, LoadsTextTensorsByNameAndTruncatesPositions) {
  ClipTextEncoder encoder(archive_options());
  const WeightImportReport report = import_clip_text_weights(archive(), *encoder);
  EXPECT_EQ(report.loaded, 5 + 2 * 12);
  EXPECT_EQ(report.skipped, 2);  // visual.weight, logit_scale
  EXPECT_EQ(report.resized, std::vector<std::string>{"positional_embedding"});
  const auto& expected = ClipTextImport::expected();
  EXPECT_EQ(expected.size(), 29u);
  for (const auto& item : encoder->named_parameters()) {
    torch::Tensor want = expected.at(item.key());
    if (item.key() == "positional_embedding") want = want.slice(0, 0, 16);
    EXPECT_TRUE(torch::equal(item.value(), want)) << item.key();
  }
}

TEST_F(ClipTextImport, MismatchesAreClearErrors) {
  ClipTextOptions wide = archive_options();
  wide.width = 48;
  std::string message = error_message([&] {
    ClipTextEncoder encoder(wide);
    import_clip_text_weights(archive(), *encoder);
  });
  EXPECT_NE(message.find(archive()), std::string::npos) << message;
  // Parameters of the encoder itself come first in registration order.
  EXPECT_NE(message.find("positional_embedding has shape [77, 32] but the model expects [16, 48]"), std::string::npos)
      << message;

  ClipTextOptions deep = archive_options();
  deep.layers = 3;
  message = error_message([&] {
    ClipTextEncoder encoder(deep);
    import_clip_text_weights(archive(), *encoder);
  });
  EXPECT_NE(message.find("missing transformer.resblocks.2.attn.in_proj_weight"), std::string::npos) << message;

  ClipTextOptions shallow = archive_options();
  shallow.layers = 1;
  message = error_message([&] {
    ClipTextEncoder encoder(shallow);
    import_clip_text_weights(archive(), *encoder);
  });
  EXPECT_NE(message.find("transformer.resblocks.1."), std::string::npos) << message;
  EXPECT_NE(message.find("has no counterpart"), std::string::npos) << message;

  ClipTextOptions longer = archive_options();
  longer.context_length = 80;
  message = error_message([&] {
    ClipTextEncoder encoder(longer);
    import_clip_text_weights(archive(), *encoder);
  });
  EXPECT_NE(message.find("positional_embedding has shape [77, 32] but the model expects [80, 32]"), std::string::npos)
      << message;
}

// ---- class embeddings ----------------------------------------------------------------------------

ClipTextEncoder tokenizer_sized_encoder(uint64_t seed) {
  torch::manual_seed(seed);
  ClipTextOptions options;
  options.context_length = 16;
  options.width = 32;
  options.heads = 2;
  options.layers = 1;
  options.embed_dim = 24;
  return ClipTextEncoder(options);
}

std::shared_ptr<const ClipTokenizer> tokenizer_ptr() {
  return std::shared_ptr<const ClipTokenizer>(&shared_tokenizer(), [](const ClipTokenizer*) {});
}

TEST(ClipTextEmbeddings, FrozenNormalizedAndCachedInMemory) {
  ClipTextEncoder encoder = tokenizer_sized_encoder(1);
  TextEmbeddings embeddings(encoder, tokenizer_ptr());
  for (const auto& parameter : encoder->parameters()) EXPECT_FALSE(parameter.requires_grad());
  EXPECT_FALSE(encoder->is_training());
  const std::vector<std::string> names{"wall", "chest of drawers", "sky"};
  EXPECT_EQ(embeddings.prompt("sky"), "a photo of a sky.");
  const torch::Tensor first = embeddings.get(names);
  ASSERT_EQ(first.sizes(), torch::IntArrayRef({3, 24}));
  EXPECT_FALSE(first.requires_grad());
  EXPECT_TRUE(torch::allclose(first.norm(2, -1), torch::ones({3}), 1e-5, 1e-6));
  torch::NoGradGuard no_grad;
  const torch::Tensor raw = encoder->forward(
      shared_tokenizer().tokenize({"a photo of a wall.", "a photo of a chest of drawers.", "a photo of a sky."}, 16));
  expect_close(first, raw / raw.norm(2, -1, true), "normalized embeddings");
  EXPECT_TRUE(torch::equal(embeddings.get(names), first));
  const TextEmbeddingsStats stats = embeddings.stats();
  EXPECT_EQ(stats.computed, 1);
  EXPECT_EQ(stats.memory_hits, 1);
  EXPECT_EQ(stats.disk_hits, 0);

  TextEmbeddingsOptions raw_options;
  raw_options.normalize = false;
  raw_options.batch_size = 2;  // two encoder calls
  TextEmbeddings unnormalized(encoder, tokenizer_ptr(), raw_options);
  expect_close(unnormalized.get(names), raw, "raw embeddings");
  EXPECT_EQ(embeddings.get({}).sizes(), torch::IntArrayRef({0, 24}));

  TextEmbeddingsOptions bad;
  bad.prompt_template = "a photo";
  EXPECT_NE(error_message([&] { TextEmbeddings e(encoder, tokenizer_ptr(), bad); }).find("has no {}"),
            std::string::npos);
}

TEST(ClipTextEmbeddings, DiskCacheKeyedByClassesAndWeights) {
  const std::string dir = temp_path("text_cache_run", "");
  std::filesystem::remove_all(dir);
  TextEmbeddingsOptions options;
  options.cache_dir = dir;
  const std::vector<std::string> names{"road", "sidewalk", "traffic light"};

  torch::Tensor computed;
  {
    TextEmbeddings embeddings(tokenizer_sized_encoder(2), tokenizer_ptr(), options);
    computed = embeddings.get(names);
    EXPECT_EQ(embeddings.stats().computed, 1);
    EXPECT_TRUE(std::filesystem::is_regular_file(dir + "/text_embeddings.pt"));
    EXPECT_EQ(embeddings.cache_path(), dir + "/text_embeddings.pt");
    // The file is an ordinary torch.save-compatible dict.
    const std::string check = std::string(SEGRUN_TEST_PYTHON) +
                              " -c \"import sys, torch; d = torch.load(sys.argv[1]); "
                              "assert d['classes'] == ['road', 'sidewalk', 'traffic light'], d['classes']; "
                              "assert d['template'] == 'a photo of a {}.'; assert len(d['key']) == 16; "
                              "e = d['embeddings']; assert e.shape == (3, 24) and e.dtype == torch.float32; "
                              "assert abs(float(e.norm(dim=1).mean()) - 1.0) > 1e-3\" " +
                              embeddings.cache_path();
    EXPECT_EQ(std::system(check.c_str()), 0) << check;
  }
  {  // same weights: read from disk, identical
    TextEmbeddings embeddings(tokenizer_sized_encoder(2), tokenizer_ptr(), options);
    EXPECT_TRUE(torch::equal(embeddings.get(names), computed));
    EXPECT_EQ(embeddings.stats().disk_hits, 1);
    EXPECT_EQ(embeddings.stats().computed, 0);
    EXPECT_NE(embeddings.cache_key(names), embeddings.cache_key({"road", "sidewalk"}));
    EXPECT_NE(embeddings.cache_key(names), embeddings.cache_key({"road", "sidewalktraffic light"}));
  }
  {  // other weights: recomputed, different values
    TextEmbeddings embeddings(tokenizer_sized_encoder(3), tokenizer_ptr(), options);
    EXPECT_FALSE(torch::allclose(embeddings.get(names), computed));
    EXPECT_EQ(embeddings.stats().computed, 1);
  }
  {  // the original weights again: the file now holds seed 3's key, so recomputed
    TextEmbeddings embeddings(tokenizer_sized_encoder(2), tokenizer_ptr(), options);
    EXPECT_TRUE(torch::allclose(embeddings.get(names), computed, 1e-6, 1e-6));
    EXPECT_EQ(embeddings.stats().computed, 1);
  }
  {  // a corrupt file is recomputed, then overwritten
    std::ofstream(dir + "/text_embeddings.pt", std::ios::binary) << "garbage";
    TextEmbeddings embeddings(tokenizer_sized_encoder(2), tokenizer_ptr(), options);
    EXPECT_TRUE(torch::allclose(embeddings.get(names), computed, 1e-6, 1e-6));
    EXPECT_EQ(embeddings.stats().computed, 1);
    TextEmbeddings again(tokenizer_sized_encoder(2), tokenizer_ptr(), options);
    again.get(names);
    EXPECT_EQ(again.stats().disk_hits, 1);
  }
  std::filesystem::remove_all(dir);
}

// A manual measurement (~136 GFLOP, 50 s on the shared machine: beyond a unit test's budget): run with
// --gtest_also_run_disabled_tests --gtest_filter='*RealSize*'.
TEST(ClipTextEmbeddings, DISABLED_RealSizeEncoderOnAde20kPrompts) {
  torch::manual_seed(4);
  TextEmbeddings embeddings(ClipTextEncoder(clip_text_options_for("clip_rn50")), tokenizer_ptr());
  const auto start = std::chrono::steady_clock::now();
  const torch::Tensor ade = embeddings.get(data::class_names(data::Layout::kAde20k));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ade.sizes(), torch::IntArrayRef({150, 1024}));
  EXPECT_TRUE(torch::isfinite(ade).all().item<bool>());
  EXPECT_TRUE(torch::allclose(ade.norm(2, -1), torch::ones({150}), 1e-5, 1e-6));
  std::cout << "[ timing   ] 150 ADE20K prompts through the real-size text encoder: " << seconds << " s\n";
}

}  // namespace
}  // namespace segrun::models
