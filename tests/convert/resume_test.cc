// Resume through the real pipeline (issue 8): a conversion with a work dir
// stopped after layer k continues from layer k when rerun, and writes what an
// uninterrupted run writes, bit for bit; unusable state is ignored and
// recomputed; the fingerprint separates runs that would compute different
// layers. Plus the state files alone: exact round trip, torn files and
// concurrent writers.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "care/convert/calibrate.h"
#include "care/convert/decompose_model.h"
#include "care/convert/fingerprint.h"
#include "care/convert/pipeline.h"
#include "care/convert/resume_state.h"
#include "care/engine/families.h"
#include "care/io/model.h"
#include "convert/pipeline_test_util.h"
#include "support/fixtures.h"

namespace care::convert {
namespace {

using testing::ConvertUntil;
using testing::ExpectSameOutput;

namespace fs = std::filesystem;
using testing::SmallOptions;
using testing::TokenStream;

void ExpectSameReport(const ConversionReport& a, const ConversionReport& b) {
  // Exact: the resumed run restores the same bits it would have computed.
  EXPECT_EQ(a.heldout_nll_original, b.heldout_nll_original);
  EXPECT_EQ(a.heldout_nll_converted, b.heldout_nll_converted);
  ASSERT_TRUE(a.original && b.original && a.converted && b.converted);
  EXPECT_EQ(a.original->ppl, b.original->ppl);
  EXPECT_EQ(a.converted->ppl, b.converted->ppl);
  EXPECT_EQ(a.allocation_chosen, b.allocation_chosen);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_EQ(a.layers[l].rank_k, b.layers[l].rank_k);
    EXPECT_EQ(a.layers[l].heldout_error_k, b.layers[l].heldout_error_k);
    EXPECT_EQ(a.layers[l].calib_error_v, b.layers[l].calib_error_v);
  }
}

class ResumeTest : public testing::WorkDirTest {
 protected:
  ResumeTest() : WorkDirTest("convert_resume") {}

  // stories260K (5 layers), auto allocation (held-out candidate scores),
  // evaluation on the held-back tenth of the stream.
  ConvertOptions Options(const std::string& out) {
    ConvertOptions o =
        SmallOptions(::care::testing::FixturePath("stories260K-hf"),
                     dir_ + "/" + out, Budget::KvSave(0.5), Method::kCare);
    o.allocation = AllocationStrategy::kAuto;
    testing::AddEvaluation(o, 64, 4);
    o.threads = 1;
    return o;
  }

  // The uninterrupted reference (no work dir).
  const ConversionReport& Reference() {
    if (!reference_) {
      absl::StatusOr<ConversionReport> r = ConvertModel(Options("reference"));
      EXPECT_TRUE(r.ok()) << r.status();
      reference_ = r.ok() ? *r : ConversionReport();
    }
    return *reference_;
  }

  std::vector<fs::path> StateDirs() {
    std::vector<fs::path> dirs;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(work_, ec)) {
      dirs.push_back(e.path());
    }
    return dirs;
  }

  std::optional<ConversionReport> reference_;
};

TEST_F(ResumeTest, StoppedAfterLayerKResumesAtKAndWritesTheSameBits) {
  const ConversionReport& reference = Reference();
  ConvertOptions o = Options("resumed");
  o.work_dir = work_;
  absl::Status stopped = ConvertUntil(o, "calibrate", 2);
  ASSERT_TRUE(absl::IsCancelled(stopped)) << stopped;
  ASSERT_EQ(StateDirs().size(), 1u);
  const fs::path state = StateDirs()[0];
  EXPECT_TRUE(fs::exists(state / "layer-00000.bin"));
  EXPECT_TRUE(fs::exists(state / "layer-00001.bin"));
  EXPECT_TRUE(fs::exists(state / "hidden.bin"));
  EXPECT_FALSE(fs::exists(dir_ + "/resumed"));

  int64_t progress_resumed = -1;
  absl::StatusOr<ConversionReport> r =
      ConvertModel(o, [&](const ConvertProgress& p) {
        if (p.stage == "calibrate") progress_resumed = p.resumed_layers;
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_layers, 2);
  EXPECT_EQ(progress_resumed, 2);
  ExpectSameReport(*r, reference);
  ExpectSameOutput(dir_ + "/reference", dir_ + "/resumed");
  // The state is deleted once the output is written.
  EXPECT_FALSE(fs::exists(state));
  // Only the layers that ran count FLOPs: 3 of 5 plus the head.
  ASSERT_GE(r->timings.size(), 2u);
  EXPECT_EQ(r->timings[1].stage, "calibrate");
  EXPECT_GT(r->timings[1].flops, 0);
  EXPECT_LT(r->timings[1].flops, reference.timings[1].flops);
}

TEST_F(ResumeTest, FinishedCalibrationAndOriginalScoresAreReused) {
  const ConversionReport& reference = Reference();
  ConvertOptions o = Options("after_allocate");
  o.work_dir = work_;
  // Stopped in the write stage, after the evaluation (one pass runs both
  // models): calibration, every candidate's held-out score and the original
  // model's perplexity are saved.
  absl::Status stopped = ConvertUntil(o, "write", 1);
  ASSERT_TRUE(absl::IsCancelled(stopped)) << stopped;
  std::vector<std::string> stages;
  absl::StatusOr<ConversionReport> r =
      ConvertModel(o, [&](const ConvertProgress& p) {
        if (stages.empty() || stages.back() != p.stage) {
          stages.push_back(p.stage);
        }
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_layers, 5);
  ExpectSameReport(*r, reference);
  ExpectSameOutput(dir_ + "/reference", dir_ + "/after_allocate");
  // No forward ran in calibrate or allocate; evaluate ran one pass, not two.
  for (const StageTiming& t : r->timings) {
    if (t.stage == "calibrate" || t.stage == "allocate") {
      EXPECT_EQ(t.flops, 0) << t.stage;
    }
    if (t.stage == "evaluate") {
      for (const StageTiming& ref : reference.timings) {
        if (ref.stage == "evaluate") {
          EXPECT_NEAR(t.flops, ref.flops / 2, 1);
        }
      }
    }
  }
}

TEST_F(ResumeTest, CorruptStateIsIgnoredAndRecomputed) {
  const ConversionReport& reference = Reference();
  ConvertOptions o = Options("corrupt");
  o.work_dir = work_;
  for (const char* victim : {"hidden.bin", "layer-00001.bin"}) {
    SCOPED_TRACE(victim);
    absl::Status stopped = ConvertUntil(o, "calibrate", 3);
    ASSERT_TRUE(absl::IsCancelled(stopped)) << stopped;
    ASSERT_EQ(StateDirs().size(), 1u);
    const fs::path file = StateDirs()[0] / victim;
    ASSERT_TRUE(fs::exists(file));
    if (std::string(victim) == "hidden.bin") {
      // One flipped bit in the payload: the checksum catches it.
      std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(200);
      char c = 0;
      f.read(&c, 1);
      c ^= 0x10;
      f.seekp(200);
      f.write(&c, 1);
    } else {
      // A torn write: the size no longer matches the header.
      fs::resize_file(file, fs::file_size(file) - 100);
    }
    absl::StatusOr<ConversionReport> r = ConvertModel(o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->resumed_layers, 0);
    ExpectSameReport(*r, reference);
    ExpectSameOutput(dir_ + "/reference", dir_ + "/corrupt");
    fs::remove_all(dir_ + "/corrupt");
  }
}

TEST_F(ResumeTest, ChangedSeedChangesTheFingerprintAndStartsOver) {
  ConvertOptions o = Options("seeded");
  o.work_dir = work_;
  ASSERT_TRUE(absl::IsCancelled(ConvertUntil(o, "calibrate", 3)));
  o.seed = 7;
  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_layers, 0);
  // The seed-0 state is still there (another attempt may want it).
  EXPECT_EQ(StateDirs().size(), 1u);
}

TEST(FingerprintTest, CoversWhatChangesTheLayersAndNothingElse) {
  CARE_REQUIRE_FIXTURES();
  const std::string model = ::care::testing::FixturePath("stories260K-hf");
  auto fingerprint = [&](const ConvertOptions& o) {
    CalibrationPlan plan;
    plan.samples = o.calib_samples;
    plan.seq_len = o.calib_seq_len;
    plan.seed = o.seed;
    plan.range = {0, static_cast<int64_t>(TokenStream().size() / 2)};
    plan.heldout_windows = o.heldout_windows;
    auto windows = MakeCalibrationWindows(TokenStream(), plan);
    EXPECT_TRUE(windows.ok()) << windows.status();
    auto f = ResumeFingerprint(model, *windows, o);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? *f : std::string();
  };
  ConvertOptions base =
      SmallOptions(model, "/unused", Budget::KvSave(0.5), Method::kCare);
  const std::string f0 = fingerprint(base);
  EXPECT_EQ(f0.size(), 64u);
  EXPECT_EQ(fingerprint(base), f0);  // deterministic
  ConvertOptions o = base;
  o.seed = 1;
  EXPECT_NE(fingerprint(o), f0);
  o = base;
  o.calib_samples = 32;
  EXPECT_NE(fingerprint(o), f0);
  o = base;
  o.damping = 0.02;
  EXPECT_NE(fingerprint(o), f0);
  o = base;
  o.method = Method::kAsvd;
  EXPECT_NE(fingerprint(o), f0);
  o = base;
  o.solver = WhiteningSolver::kEigen;
  EXPECT_NE(fingerprint(o), f0);
  // Acting after calibration, or not on the numbers: the same state serves.
  o = base;
  o.budget = Budget::KvSave(0.75);
  o.allocation = AllocationStrategy::kAuto;
  o.threads = 1;
  o.output_dir = "/elsewhere";
  EXPECT_EQ(fingerprint(o), f0);
}

// Issue 10: the pass keeps no layer's W_K / W_V (the allocation stage
// re-reads them), and factors from re-read weights are the same bits.
TEST(DecomposeMemoryTest, CalibrationKeepsNoProjectionWeights) {
  CARE_REQUIRE_FIXTURES();
  auto model = io::OpenModel(::care::testing::FixturePath("stories260K-hf"),
                             ::care::engine::Families());
  ASSERT_TRUE(model.ok()) << model.status();
  CalibrationPlan plan;
  plan.samples = 16;
  plan.seq_len = 32;
  plan.range = {0, static_cast<int64_t>(TokenStream().size() / 2)};
  plan.heldout_windows = 4;
  auto windows = MakeCalibrationWindows(TokenStream(), plan);
  ASSERT_TRUE(windows.ok()) << windows.status();
  engine::EngineOptions eo;
  eo.threads = 1;
  auto dm = CalibrateAndDecompose(model->config, *model->weights, *windows,
                                  FactorizeOptions{}, eo, nullptr);
  ASSERT_TRUE(dm.ok()) << dm.status();
  ASSERT_EQ(dm->layers.size(), 5u);
  for (const LayerDecomposition& d : dm->layers) {
    EXPECT_EQ(d.weights.w_k.size(), 0);
    EXPECT_EQ(d.weights.w_v.size(), 0);
  }
  auto w = LoadLayerWeights(model->config, *model->weights, 2);
  ASSERT_TRUE(w.ok()) << w.status();
  LayerDecomposition with_weights = dm->layers[2];
  with_weights.weights = *w;
  auto a = TruncateLayer(dm->layers[2], *w, 8, 8);
  auto b = TruncateLayer(with_weights, 8, 8);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->KA(), b->KA());
  EXPECT_EQ(a->VB(), b->VB());
  // Without weights there is nothing to build the factors from.
  EXPECT_EQ(TruncateLayer(dm->layers[2], 8, 8).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

LayerDecomposition SomeDecomposition(int64_t out, uint32_t seed) {
  std::srand(seed);
  LayerDecomposition d;
  d.k.singular_values = Eigen::VectorXd::Random(out);
  d.k.right_vectors = Eigen::MatrixXd::Random(out, out);
  d.v.singular_values = Eigen::VectorXd::Random(out);
  d.v.right_vectors = Eigen::MatrixXd::Random(out, out);
  d.scaling.jitter_added = 1e-9 * seed;
  d.scaling.zero_channels = seed;
  d.scaling.note = "rank-deficient";
  return d;
}

TEST(ResumeStateTest, RoundTripIsExactAndDamageIsDetected) {
  const std::string root = ::care::testing::MakeTempDir("resume_state");
  const std::string fp(64, 'a');
  auto state = ResumeState::Open(root, fp);
  ASSERT_TRUE(state.ok()) << state.status();
  const LayerDecomposition d = SomeDecomposition(8, 3);
  LayerGrams g;
  g.calib_k = g.calib_v = g.heldout_k = g.heldout_v =
      Eigen::MatrixXd::Random(8, 8);
  ASSERT_TRUE((*state)->SaveLayer(4, d, g).ok());
  std::optional<SavedLayer> back = (*state)->LoadLayer(4, 8);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->decomposition.k.right_vectors, d.k.right_vectors);
  EXPECT_EQ(back->decomposition.v.singular_values, d.v.singular_values);
  EXPECT_EQ(back->decomposition.scaling.jitter_added, d.scaling.jitter_added);
  EXPECT_EQ(back->decomposition.scaling.note, d.scaling.note);
  EXPECT_EQ(back->grams.heldout_v, g.heldout_v);
  // Wrong shape expected, absent layer: not usable.
  EXPECT_FALSE((*state)->LoadLayer(4, 16).has_value());
  EXPECT_FALSE((*state)->LoadLayer(5, 8).has_value());

  const MatrixRM hidden = MatrixRM::Random(6, 4);
  ASSERT_TRUE((*state)->SaveHidden(3, hidden).ok());
  std::optional<SavedHidden> h = (*state)->LoadHidden(6, 4);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->next_layer, 3);
  EXPECT_EQ(h->hidden, hidden);
  EXPECT_FALSE((*state)->LoadHidden(7, 4).has_value());  // other windows
  // A file of another kind under the name: rejected by its header.
  fs::copy_file((*state)->dir() + "/layer-00004.bin",
                (*state)->dir() + "/hidden.bin",
                fs::copy_options::overwrite_existing);
  EXPECT_FALSE((*state)->LoadHidden(6, 4).has_value());
  // Garbage and an empty file.
  std::ofstream((*state)->dir() + "/layer-00004.bin") << "not a state file";
  EXPECT_FALSE((*state)->LoadLayer(4, 8).has_value());
  std::ofstream((*state)->dir() + "/layer-00004.bin").close();
  EXPECT_FALSE((*state)->LoadLayer(4, 8).has_value());

  ASSERT_TRUE((*state)->SaveValues("score", {1.5, -2}).ok());
  EXPECT_EQ((*state)->LoadValues("score", 2), (std::vector<double>{1.5, -2}));
  EXPECT_FALSE((*state)->LoadValues("score", 3).has_value());
  (*state)->Remove();
  EXPECT_FALSE(fs::exists(root + "/" + fp));
  fs::remove_all(root);
}

TEST(ResumeStateTest, ConcurrentWritersNeverTearAFile) {
  const std::string root = ::care::testing::MakeTempDir("resume_race");
  const std::string fp(64, 'b');
  auto a = ResumeState::Open(root, fp);
  auto b = ResumeState::Open(root, fp);
  ASSERT_TRUE(a.ok() && b.ok());
  // Two attempts write the same layer (each its own, different contents, to
  // tell them apart) while a third reads: every read is one of the two.
  const LayerDecomposition d1 = SomeDecomposition(32, 1);
  const LayerDecomposition d2 = SomeDecomposition(32, 2);
  LayerGrams g;
  g.calib_k = g.calib_v = g.heldout_k = g.heldout_v =
      Eigen::MatrixXd::Identity(32, 32);
  std::atomic<bool> done{false};
  std::thread w1([&] {
    for (int i = 0; i < 40; ++i) EXPECT_TRUE((*a)->SaveLayer(0, d1, g).ok());
  });
  std::thread w2([&] {
    for (int i = 0; i < 40; ++i) EXPECT_TRUE((*b)->SaveLayer(0, d2, g).ok());
  });
  int reads = 0;
  std::thread reader([&] {
    while (!done.load()) {
      std::optional<SavedLayer> s = (*a)->LoadLayer(0, 32);
      if (!s) continue;  // not written yet
      ++reads;
      const Eigen::MatrixXd& v = s->decomposition.k.right_vectors;
      EXPECT_TRUE(v == d1.k.right_vectors || v == d2.k.right_vectors);
    }
  });
  w1.join();
  w2.join();
  done.store(true);
  reader.join();
  EXPECT_GT(reads, 0);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator((*a)->dir())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos);
    ++files;
  }
  EXPECT_EQ(files, 1);
  fs::remove_all(root);
}

}  // namespace
}  // namespace care::convert
