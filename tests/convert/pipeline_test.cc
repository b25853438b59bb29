// The conversion pipeline through the real path: fixtures in, a written
// checkpoint out, reloaded by the engine.
#include "care/convert/pipeline.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "care/engine/families.h"
#include "care/engine/perplexity.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"
#include "convert/pipeline_test_util.h"
#include "support/fixtures.h"

namespace care::convert {
namespace {

using testing::FirstWindows;
using testing::Fixture;
using testing::ModelLogits;
using testing::SmallOptions;

std::string TempOut(const std::string& name) {
  return ::care::testing::MakeTempDir("convert") + "/" + name;
}

// Largest |a − b| relative to the largest |b|.
double MaxRelative(const MatrixRM& a, const MatrixRM& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols() || b.size() == 0) return 1;
  return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

class FullRankTest
    : public ::testing::TestWithParam<std::tuple<std::string, Method>> {};

TEST_P(FullRankTest, ReproducesOriginalLogitsThroughWrittenCheckpoint) {
  CARE_REQUIRE_FIXTURES();
  const auto& [model, method] = GetParam();
  const std::string out = TempOut("full");
  absl::StatusOr<ConversionReport> r = ConvertModel(
      SmallOptions(Fixture(model), out, Budget::KvSave(0), method));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kv_width_after, r->kv_width_before);
  const engine::TokenWindows windows = FirstWindows(2, 64);
  const MatrixRM original = ModelLogits(Fixture(model), windows);
  const MatrixRM converted = ModelLogits(out, windows);
  // Full rank: Ŵ = W·V·Vᵀ with orthogonal V, factors in float32, so K and V
  // move by ~1e-7 relative; through 4–5 float32 layers the logits stay
  // within ~1e-5 of the original (the bound is 1e-4). A wrong
  // transpose, bias or rank would move them by O(1).
  EXPECT_LE(MaxRelative(converted, original), 1e-4)
      << model << " " << MethodName(method);
  std::filesystem::remove_all(std::filesystem::path(out).parent_path());
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, FullRankTest,
    ::testing::Combine(::testing::Values("stories260K-hf", "tinygqa-hf"),
                       ::testing::Values(Method::kCare, Method::kCareC,
                                         Method::kAsvd, Method::kSvd)),
    [](const auto& info) {
      std::string name =
          std::get<0>(info.param) + "_" + MethodName(std::get<1>(info.param));
      for (char& c : name) {
        if (c == '-') c = '_';
      }
      return name;
    });

TEST(PipelineTest, WritesLatentFormatAndCopiesEverythingElseBitExact) {
  CARE_REQUIRE_FIXTURES();
  const std::string src = Fixture("stories260K-hf");
  const std::string out = TempOut("half");
  ConvertOptions o = SmallOptions(src, out, Budget::KvSave(0.5), Method::kCare);
  o.allocation = AllocationStrategy::kAdjusted;
  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();

  auto source = io::OpenModel(src, ::care::engine::Families());
  auto converted = io::OpenModel(out, ::care::engine::Families());
  ASSERT_TRUE(source.ok() && converted.ok()) << converted.status();
  const ModelConfig& c = converted->config;
  ASSERT_TRUE(c.latent.has_value());
  EXPECT_EQ(c.architecture, "CareLlamaForCausalLM");
  EXPECT_EQ(c.raw["care"]["method"], "care");
  EXPECT_EQ(c.raw["care"]["budget"], "kv_save=0.5");
  EXPECT_EQ(c.raw["rope_theta"], source->config.raw["rope_theta"]);
  int64_t total = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    EXPECT_EQ(c.latent->rank_k[l], r->layers[l].rank_k);
    EXPECT_EQ(c.latent->rank_v[l], r->layers[l].rank_v);
    total += c.latent->rank_k[l] + c.latent->rank_v[l];
    EXPECT_FALSE(converted->weights->Has(io::names::KProj(l)));
    EXPECT_FALSE(converted->weights->Has(io::names::VProj(l)));
    EXPECT_EQ(*converted->weights->Shape(io::names::KAProj(l)),
              (std::vector<int64_t>{c.latent->rank_k[l], 64}));
    EXPECT_EQ(*converted->weights->Shape(io::names::VBProj(l)),
              (std::vector<int64_t>{32, c.latent->rank_v[l]}));
  }
  EXPECT_EQ(total, 160);  // adjusted spends the budget exactly
  EXPECT_EQ(r->kv_width_after, 160);
  for (const std::string& name : source->weights->Names()) {
    if (name.find("k_proj") != std::string::npos ||
        name.find("v_proj") != std::string::npos) {
      continue;
    }
    auto a = source->weights->Raw(name);
    auto b = converted->weights->Raw(name);
    ASSERT_TRUE(a.ok() && b.ok()) << name;
    EXPECT_EQ(a->bytes, b->bytes) << name;
    EXPECT_EQ(a->shape, b->shape) << name;
  }
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.model"));
  std::ifstream report(out + "/care_report.json");
  const nlohmann::json j =
      nlohmann::json::parse(report, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["kv_width_before"], 320);
  EXPECT_EQ(j["layers"].size(), 5u);
  std::filesystem::remove_all(std::filesystem::path(out).parent_path());
}

TEST(PipelineTest, ReportedPerplexityIsReproducedByTheReloadedCheckpoint) {
  CARE_REQUIRE_FIXTURES();
  const std::string out = TempOut("eval");
  ConvertOptions o = SmallOptions(Fixture("tinygqa-hf"), out,
                                  Budget::KvSave(0.75), Method::kCare);
  o.allocation = AllocationStrategy::kAuto;
  testing::AddEvaluation(o, 128, 8);
  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->original && r->converted);
  EXPECT_EQ(r->converted->windows, 8);
  EXPECT_EQ(r->converted->predictions, 8 * 127);
  // A 75 % smaller cache costs quality, but not everything.
  EXPECT_GT(r->converted->mean_nll, r->original->mean_nll);
  EXPECT_LT(r->converted->mean_nll, r->original->mean_nll + 1.5);

  auto reloaded = testing::ReloadedPerplexity(out, *r, 128, 8);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  // Same float32 factors, same engine code: bit-identical.
  EXPECT_EQ(reloaded->mean_nll, r->converted->mean_nll);
  std::filesystem::remove_all(std::filesystem::path(out).parent_path());
}

TEST(PipelineTest, AutoKeepsTheBestCandidateWithinTheBudget) {
  CARE_REQUIRE_FIXTURES();
  const std::string out = TempOut("auto");
  ConvertOptions o = SmallOptions(Fixture("stories260K-hf"), out,
                                  Budget::KvSave(0.75), Method::kCare);
  o.allocation = AllocationStrategy::kAuto;
  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->candidates.size(), 6u);
  double best = 1e300;
  for (const CandidateReport& c : r->candidates)
    best = std::min(best, c.heldout_nll);
  int chosen = 0;
  for (const CandidateReport& c : r->candidates) {
    int64_t total = 0;
    for (size_t l = 0; l < c.rank_k.size(); ++l)
      total += c.rank_k[l] + c.rank_v[l];
    EXPECT_LE(total, r->budget_width) << c.name;  // KV parity
    if (c.chosen) {
      ++chosen;
      EXPECT_EQ(c.heldout_nll, best);
      EXPECT_EQ(c.name, r->allocation_chosen);
      EXPECT_EQ(total, r->kv_width_after);
    }
  }
  EXPECT_EQ(chosen, 1);
  EXPECT_EQ(r->budget_width, 80);
  EXPECT_LE(r->kv_width_after, 80);
  EXPECT_EQ(r->heldout_nll_converted, best);
  for (const LayerReport& l : r->layers) {
    EXPECT_GE(l.heldout_error_k, 0);
    EXPECT_LT(l.heldout_error_k, 1);
    EXPECT_GT(l.retained_energy_v, 0);
  }
  std::filesystem::remove_all(std::filesystem::path(out).parent_path());
}

TEST(PipelineTest, HeldOutWindowsRunOnlyWhenNeededOrAsked) {
  CARE_REQUIRE_FIXTURES();
  const std::string dir = ::care::testing::MakeTempDir("convert_heldout");
  auto options = [&](const std::string& name) {
    ConvertOptions o = SmallOptions(Fixture("tinygqa-hf"), dir + "/" + name,
                                    Budget::KvSave(0.75), Method::kCare);
    testing::AddEvaluation(o, 64, 2);
    return o;
  };
  EXPECT_EQ(HeldoutReason(options("x")), "");
  ConvertOptions asked = options("asked");
  asked.heldout_figures = true;
  EXPECT_EQ(HeldoutReason(asked), "asked");
  ConvertOptions automatic = options("auto");
  automatic.allocation = AllocationStrategy::kAuto;
  EXPECT_EQ(HeldoutReason(automatic), "allocation auto");

  absl::StatusOr<ConversionReport> skipped = ConvertModel(options("skipped"));
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  absl::StatusOr<ConversionReport> full = ConvertModel(asked);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_FALSE(skipped->heldout_run);
  EXPECT_TRUE(full->heldout_run);
  EXPECT_EQ(full->heldout_reason, "asked");
  // The held-out slice stays out of the sampled range either way: the same
  // calibration windows give bit-identical factors and perplexities.
  ASSERT_TRUE(skipped->converted.has_value() && full->converted.has_value());
  EXPECT_EQ(skipped->converted->mean_nll, full->converted->mean_nll);
  EXPECT_EQ(skipped->original->mean_nll, full->original->mean_nll);
  EXPECT_EQ(skipped->calib_range_end, full->calib_range_end);
  EXPECT_EQ(skipped->heldout_tokens, 0);
  EXPECT_GT(full->heldout_tokens, 0);
  ASSERT_EQ(skipped->layers.size(), full->layers.size());
  for (size_t l = 0; l < full->layers.size(); ++l) {
    EXPECT_EQ(skipped->layers[l].rank_k, full->layers[l].rank_k);
    EXPECT_EQ(skipped->layers[l].calib_error_k, full->layers[l].calib_error_k);
    EXPECT_GT(full->layers[l].heldout_error_k, 0);
  }
  // Less work, as counted: no held-out rows, no last-layer attention/MLP and
  // no head in the calibration pass, no allocation pass.
  auto flops = [](const ConversionReport& r, const std::string& stage) {
    for (const StageTiming& t : r.timings) {
      if (t.stage == stage) return t.flops;
    }
    return -1.0;
  };
  EXPECT_LT(flops(*skipped, "calibrate"), flops(*full, "calibrate"));
  EXPECT_EQ(flops(*skipped, "allocate"), 0);
  EXPECT_GT(flops(*full, "allocate"), 0);
  // The JSON says so and leaves the held-out figures out.
  const nlohmann::json j = ReportToJson(*skipped);
  EXPECT_FALSE(j["calibration"]["heldout_run"].get<bool>());
  EXPECT_FALSE(j["calibration"].contains("heldout_nll_original"));
  EXPECT_FALSE(j["layers"][0].contains("heldout_error_k"));
  EXPECT_FALSE(j["candidates"][0].contains("heldout_nll"));
  const nlohmann::json jf = ReportToJson(*full);
  EXPECT_TRUE(jf["calibration"].contains("heldout_nll_converted"));
  EXPECT_TRUE(jf["layers"][0].contains("heldout_error_k"));
  std::filesystem::remove_all(dir);
}

TEST(PipelineTest, SequentialRefitIsConsistentAndExactAtFullRank) {
  CARE_REQUIRE_FIXTURES();
  const std::string dir = ::care::testing::MakeTempDir("convert_seq");
  const std::string src = Fixture("stories260K-hf");
  ConvertOptions full =
      SmallOptions(src, dir + "/full", Budget::KvSave(0), Method::kCare);
  full.sequential = true;
  ASSERT_TRUE(ConvertModel(full).ok());
  const engine::TokenWindows w = FirstWindows(2, 64);
  // Same bound as FullRankTest: full rank is exact whatever the inputs.
  EXPECT_LE(MaxRelative(ModelLogits(dir + "/full", w), ModelLogits(src, w)),
            1e-4);

  ConvertOptions o =
      SmallOptions(src, dir + "/seq", Budget::KvSave(0.75), Method::kCare);
  o.sequential = true;
  testing::AddEvaluation(o, 128, 4);
  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->sequential);
  EXPECT_TRUE(std::isfinite(r->heldout_nll_converted));
  EXPECT_GT(r->heldout_nll_converted, r->heldout_nll_original);
  EXPECT_EQ(r->kv_width_after, 80);
  // The written checkpoint is the re-fitted one: reloading it reproduces the
  // reported perplexity exactly.
  auto reloaded = testing::ReloadedPerplexity(dir + "/seq", *r, 128, 4);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->mean_nll, r->converted->mean_nll);
  std::filesystem::remove_all(dir);
}

TEST(PipelineTest, ClearErrors) {
  CARE_REQUIRE_FIXTURES();
  const std::string src = Fixture("stories260K-hf");
  const std::string dir = ::care::testing::MakeTempDir("convert_err");
  auto run = [&](ConvertOptions o) { return ConvertModel(o).status(); };

  absl::Status s =
      run(SmallOptions(src, dir + "/a", Budget::KvSave(1.0), Method::kCare));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("allowed 0 <= F <= 0.96875"), std::string::npos)
      << s;
  s = run(SmallOptions(src, dir + "/a", Budget::Rank(33), Method::kCare));
  EXPECT_NE(s.message().find("allowed 1 .. 32"), std::string::npos) << s;

  ConvertOptions tooshort =
      SmallOptions(src, dir + "/a", Budget::KvSave(0.5), Method::kCare);
  tooshort.calib_samples = 100000;
  s = run(tooshort);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("shorter than asked"), std::string::npos) << s;

  // Attention that is not GQA/MHA (KV heads not dividing the query heads)
  // and an architecture without k_proj/v_proj: rejected naming the field.
  for (const auto& [field, value, expect] :
       std::vector<std::tuple<std::string, nlohmann::json, std::string>>{
           {"num_key_value_heads", 3, "num_key_value_heads"},
           {"model_type", "gpt2", "gpt2"}}) {
    const std::string bad = dir + "/bad_" + field;
    std::filesystem::create_directories(bad);
    std::ifstream in(src + "/config.json");
    nlohmann::json config =
        nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(config.is_discarded());
    config[field] = value;
    std::ofstream(bad + "/config.json") << config.dump();
    s = run(SmallOptions(bad, dir + "/c", Budget::KvSave(0.5), Method::kCare));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(expect), std::string::npos) << s;
  }

  // A converted checkpoint has no k_proj to convert.
  ASSERT_TRUE(
      run(SmallOptions(src, dir + "/conv", Budget::KvSave(0.5), Method::kCare))
          .ok());
  s = run(SmallOptions(dir + "/conv", dir + "/b", Budget::KvSave(0.5),
                       Method::kCare));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("already a CARE latent checkpoint"),
            std::string::npos)
      << s;
  // The destination exists.
  s = run(SmallOptions(src, dir + "/conv", Budget::KvSave(0.5), Method::kCare));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  std::filesystem::remove_all(dir);
}

TEST(PipelineTest, ReportsProgressAndStopsWhenCancelled) {
  CARE_REQUIRE_FIXTURES();
  const std::string dir = ::care::testing::MakeTempDir("convert_cancel");
  ConvertOptions o = SmallOptions(Fixture("stories260K-hf"), dir + "/out",
                                  Budget::KvSave(0.5), Method::kCare);
  std::vector<ConvertProgress> seen;
  ASSERT_TRUE(ConvertModel(o, [&](const ConvertProgress& p) {
                seen.push_back(p);
              }).ok());
  ASSERT_FALSE(seen.empty());
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GE(seen[i].overall, seen[i - 1].overall) << seen[i].stage;
  }
  EXPECT_EQ(seen.back().stage, "write");
  EXPECT_DOUBLE_EQ(seen.back().overall, 1.0);

  o.output_dir = dir + "/cancelled";
  int calls = 0;
  const absl::Status s =
      ConvertModel(o, nullptr, [&] { return ++calls > 3; })  // inside calibrate
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_NE(s.message().find("calibrate"), std::string::npos) << s;
  EXPECT_FALSE(std::filesystem::exists(o.output_dir));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace care::convert
