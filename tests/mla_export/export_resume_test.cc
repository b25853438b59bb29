// Resume of the deepseek-v3 layout (mla_resume.h): a conversion with a work
// dir that dies mid-pass continues from its saved layers when rerun, and
// writes what an uninterrupted run writes, bit for bit. A real process is
// killed (-9) mid-layer; in process, a cancelled run checks the exact
// resumed layer count, a finished pass and a key mismatch.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "care/convert/pipeline.h"
#include "convert/pipeline_test_util.h"
#include "support/fixtures.h"
#include "support/process.h"

namespace care::convert {
namespace {

using testing::ExpectSameOutput;

namespace fs = std::filesystem;

std::string ReadBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<fs::path> StateDirs(const std::string& work) {
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(work, ec)) {
    if (e.path().filename().string().rfind("job-", 0) != 0) {
      dirs.push_back(e.path());
    }
  }
  return dirs;
}

class ExportResumeTest : public testing::WorkDirTest {
 protected:
  ExportResumeTest() : WorkDirTest("mla_resume") {}

  // stories260K (5 layers) at 50 % KV save, rope 8 / freqfold 1,
  // evaluation on the held-back tenth of the stream.
  ConvertOptions Options(const std::string& out) {
    ConvertOptions o = testing::SmallOptions(
        ::care::testing::FixturePath("stories260K-hf"), dir_ + "/" + out,
        Budget::KvSave(0.5), Method::kCare);
    o.output_layout = OutputLayout::kDeepseekV3;
    o.mla.rope_dim = 8;
    o.mla.freqfold = 1;
    testing::AddEvaluation(o, 64, 4);
    o.threads = 1;
    return o;
  }
};

TEST_F(ExportResumeTest, CancelledAfterLayerKResumesAtKWithTheSameBits) {
  absl::StatusOr<ConversionReport> reference =
      ConvertModel(Options("reference"));
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_EQ(reference->resumed_layers, 0);

  ConvertOptions o = Options("resumed");
  o.work_dir = work_;
  ASSERT_TRUE(absl::IsCancelled(testing::ConvertUntil(o, "calibrate", 2)));
  ASSERT_EQ(StateDirs(work_).size(), 1u);
  const fs::path state = StateDirs(work_)[0];
  EXPECT_TRUE(fs::exists(state / "mla-layer-00000.bin"));
  EXPECT_TRUE(fs::exists(state / "mla-layer-00001.bin"));
  EXPECT_TRUE(fs::exists(state / "hidden.bin"));

  int64_t progress_resumed = -1;
  absl::StatusOr<ConversionReport> r =
      ConvertModel(o, [&](const ConvertProgress& p) {
        if (p.stage == "calibrate") progress_resumed = p.resumed_layers;
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_layers, 2);
  EXPECT_EQ(progress_resumed, 2);
  // Exact: the restored layers and hidden states are the bits computed.
  EXPECT_EQ(r->heldout_nll_original, reference->heldout_nll_original);
  EXPECT_EQ(r->heldout_nll_converted, reference->heldout_nll_converted);
  ASSERT_TRUE(r->converted && reference->converted);
  EXPECT_EQ(r->converted->ppl, reference->converted->ppl);
  ASSERT_TRUE(r->deepseek_v3 && reference->deepseek_v3);
  ASSERT_EQ(r->deepseek_v3->layers.size(), 5u);
  for (size_t l = 0; l < 5; ++l) {
    EXPECT_EQ(r->deepseek_v3->layers[l].heldout_error_k,
              reference->deepseek_v3->layers[l].heldout_error_k);
    EXPECT_EQ(r->deepseek_v3->layers[l].alpha_log2,
              reference->deepseek_v3->layers[l].alpha_log2);
  }
  ExpectSameOutput(dir_ + "/reference", dir_ + "/resumed");
  EXPECT_FALSE(fs::exists(state));  // removed once the output is written
}

TEST_F(ExportResumeTest, FinishedPassIsRestoredAndOtherOptionsStartOver) {
  ConvertOptions o = Options("done");
  o.work_dir = work_;
  // Stopped in the evaluation: the whole calibration pass is saved.
  ASSERT_TRUE(absl::IsCancelled(testing::ConvertUntil(o, "evaluate", 1)));
  ASSERT_EQ(StateDirs(work_).size(), 1u);
  EXPECT_TRUE(fs::exists(StateDirs(work_)[0] / "mla-calibrated.bin"));
  EXPECT_FALSE(fs::exists(StateDirs(work_)[0] / "hidden.bin"));

  // Another rope split shares the fingerprint (model, windows, method) but
  // not the saved layers' key: nothing is reused.
  ConvertOptions other = Options("other");
  other.work_dir = work_;
  other.mla.rope_dim = 4;
  ASSERT_TRUE(absl::IsCancelled(testing::ConvertUntil(other, "evaluate", 1)));

  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_layers, 0);  // `other` overwrote the layers
  absl::StatusOr<ConversionReport> again = ConvertModel(Options("again"));
  ASSERT_TRUE(again.ok()) << again.status();
  ExpectSameOutput(dir_ + "/again", dir_ + "/done");

  // A finished pass, restored whole: no calibration forward runs.
  ConvertOptions whole = Options("whole");
  whole.work_dir = work_;
  ASSERT_TRUE(absl::IsCancelled(testing::ConvertUntil(whole, "evaluate", 1)));
  absl::StatusOr<ConversionReport> w = ConvertModel(whole);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->resumed_layers, 5);
  EXPECT_EQ(w->heldout_nll_original, again->heldout_nll_original);
  ExpectSameOutput(dir_ + "/again", dir_ + "/whole");
}

// `auto`: the winner is read back from the saved layers (no refit pass)
// and the output equals an uninterrupted `auto` run.
TEST_F(ExportResumeTest, AutoWinnerIsRestoredFromTheSavedLayers) {
  ConvertOptions o = Options("auto");
  o.mla.rope_dim = 0;
  o.mla.freqfold = 0;
  o.eval_windows = 1;
  ConvertOptions plain = o;
  plain.output_dir = dir_ + "/auto_plain";
  absl::StatusOr<ConversionReport> reference = ConvertModel(plain);
  ASSERT_TRUE(reference.ok()) << reference.status();
  o.work_dir = work_;
  ASSERT_TRUE(absl::IsCancelled(testing::ConvertUntil(o, "evaluate", 1)));
  std::vector<std::string> stages;
  absl::StatusOr<ConversionReport> r =
      ConvertModel(o, [&](const ConvertProgress& p) {
        if (p.stage == "allocate" && p.step > 0) stages.push_back(p.stage);
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_layers, 5);
  EXPECT_TRUE(stages.empty());  // no refit pass: the layers were on disk
  EXPECT_EQ(r->allocation_chosen, reference->allocation_chosen);
  EXPECT_EQ(r->heldout_nll_converted, reference->heldout_nll_converted);
  ExpectSameOutput(dir_ + "/auto_plain", dir_ + "/auto");
}

// The real thing: `care-worker convert` killed with SIGKILL in the middle
// of the calibration pass (after layer 1's fit is on disk), then rerun.
TEST_F(ExportResumeTest, KilledProcessResumesPerLayer) {
  const std::string tokens = testing::TokenFile();
  auto argv = [&](const std::string& out, bool work) {
    std::vector<std::string> a = {
        ::care::testing::BinaryPath("worker/cli/care-worker"), "convert",
        "--model", ::care::testing::FixturePath("stories260K-hf"), "--out", out,
        "--layout", "deepseek-v3", "--rope-dim", "8", "--freqfold", "1",
        "--kv-save", "0.5",
        // 5000 x 32 calibration tokens: each layer takes long enough
        // (~0.1-1 s) for the test to kill the pass between layers.
        "--calib", tokens, "--calib-samples", "5000", "--calib-seq-len", "32",
        "--eval", tokens, "--eval-seq-len", "128", "--eval-windows", "4",
        "--threads", "1", "--quiet"};
    if (work) a.insert(a.end(), {"--work-dir", work_});
    return a;
  };
  const std::string logs = dir_ + "/logs";
  fs::create_directories(logs);
  const std::string out = dir_ + "/killed";
  absl::StatusOr<std::unique_ptr<::care::testing::Process>> p =
      ::care::testing::Process::Start(argv(out, true), logs);
  ASSERT_TRUE(p.ok()) << p.status();
  // Wait for layer 1's fit on disk (the snapshot after layer 0 precedes it).
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool seen = false;
  while (std::chrono::steady_clock::now() < deadline && (*p)->Running()) {
    for (const fs::path& s : StateDirs(work_)) {
      if (fs::exists(s / "mla-layer-00001.bin")) seen = true;
    }
    if (seen) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(seen) << (*p)->Stderr();
  ASSERT_TRUE((*p)->Running()) << "finished before it could be killed";
  (*p)->Signal(SIGKILL);
  ASSERT_TRUE((*p)->Wait(absl::Seconds(10)).ok());
  ASSERT_FALSE(fs::exists(out));

  ::care::testing::CommandResult resumed =
      ::care::testing::RunCommand(argv(out, true), logs, absl::Seconds(240));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming deepseek-v3 calibration at layer"),
            std::string::npos)
      << resumed.err;
  const nlohmann::json report = nlohmann::json::parse(
      ReadBytes(out + "/care_report.json"), nullptr, false);
  ASSERT_TRUE(report.is_object());
  const int64_t resumed_layers = report.value("resumed_layers", int64_t{-1});
  EXPECT_GE(resumed_layers, 1);
  EXPECT_LE(resumed_layers, 5);

  const std::string plain = dir_ + "/plain";
  ::care::testing::CommandResult uninterrupted =
      ::care::testing::RunCommand(argv(plain, false), logs, absl::Seconds(240));
  ASSERT_EQ(uninterrupted.exit_code, 0) << uninterrupted.err;
  ExpectSameOutput(plain, out);
  const nlohmann::json ref = nlohmann::json::parse(
      ReadBytes(plain + "/care_report.json"), nullptr, false);
  EXPECT_EQ(report["converted"]["ppl"], ref["converted"]["ppl"]);
  EXPECT_TRUE(StateDirs(work_).empty());
}

}  // namespace
}  // namespace care::convert
