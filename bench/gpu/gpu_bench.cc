// GPU benchmark of the engine on a compute backend (docs/gpu.md): a bf16
// GEMM measured in the same run (the ceiling), then calibration (the
// original model over W_c windows of T_c tokens, each layer's k/v input
// accumulated into a Gram on the device and brought back) and evaluation
// (W_e windows of T_e input tokens, forward + scoring). Prints achieved
// TFLOP/s against the ceiling and the card's dense BF16 peak, the weight
// copy time hidden behind compute, and peak device memory. Lines start with
// a keyword (device, ceiling, calibration, evaluation, copy, memory, note)
// that scripts/gpu-check.sh collects.
//
//   gpu_bench --model DIR [--device cuda] [--calib-windows 256]
//     [--calib-len 32] [--eval-windows 8] [--eval-len 2048] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/compute/backend.h"
#include "care/compute/registry.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/perplexity.h"
#include "care/io/model.h"
#include "gpu_bench_stats.h"

namespace {

using Clock = std::chrono::steady_clock;
using care::compute::Backend;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<int32_t> RandomIds(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(n);
  std::mt19937_64 rng(seed);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
  return ids;
}

// Dense-model useful FLOPs (2 per multiply-add): every projection on every
// token, causal attention over the T(T+1)/2 visible pairs per window.
double LayerFlops(const care::ModelConfig& c, int64_t windows, int64_t T) {
  const double D = c.hidden_size, dh = c.head_dim;
  const double qw = c.num_attention_heads * dh, kv = c.kv_width();
  const double per_token =
      2 * (D * qw + 2 * D * kv + qw * D + 3 * D * c.intermediate_size);
  const double attn = 4.0 * c.num_attention_heads * dh * (T * (T + 1) / 2.0);
  return c.num_hidden_layers * (per_token * windows * T + attn * windows);
}

struct Phase {
  double seconds = 0;
  double issued_flop = 0;  // counted by the backend (cuda only)
  double model_flop = 0;   // LayerFlops (+ head / Gram)
  std::optional<CareCudaStats> delta;
};

std::optional<CareCudaStats> Delta(const std::optional<CareCudaStats>& a,
                                   const std::optional<CareCudaStats>& b) {
  if (!a || !b) return std::nullopt;
  CareCudaStats d = *b;
  d.weights_loaded -= a->weights_loaded;
  d.weight_bytes_copied -= a->weight_bytes_copied;
  d.host_staging_ms -= a->host_staging_ms;
  d.copy_ms -= a->copy_ms;
  d.copy_exposed_ms -= a->copy_exposed_ms;
  d.copy_hidden_ms -= a->copy_hidden_ms;
  d.gemm_flop -= a->gemm_flop;
  d.attention_flop -= a->attention_flop;
  return d;  // device_bytes_* stay absolute (peak since ResetCudaPeak)
}

// Best of `reps` timed y = x·wᵀ with bf16 w [out, in] and x [n, in].
absl::StatusOr<double> BestGemmTflops(Backend& b, int64_t n, int64_t in,
                                      int64_t out, int reps) {
  std::vector<uint16_t> w(out * in);
  std::mt19937 rng(1);
  for (uint16_t& v : w) v = static_cast<uint16_t>(0x3c00 + rng() % 0x400);
  std::vector<float> xh(n * in);
  for (float& v : xh) v = static_cast<float>(rng() % 1000) / 1000.0f - 0.5f;
  CARE_ASSIGN_OR_RETURN(care::compute::Weight dw,
                        b.LoadWeight({.dtype = care::compute::DType::kBF16,
                                      .rows = out,
                                      .cols = in,
                                      .data = w.data()}));
  CARE_ASSIGN_OR_RETURN(care::compute::Matrix x, b.Upload(xh.data(), n, in));
  CARE_ASSIGN_OR_RETURN(care::compute::Matrix y, b.Allocate(n, out));
  double best = 0;
  for (int r = 0; r < reps + 2; ++r) {
    CARE_RETURN_IF_ERROR(b.Synchronize());
    const auto t0 = Clock::now();
    CARE_RETURN_IF_ERROR(b.Linear(x, dw, nullptr, &y, false));
    CARE_RETURN_IF_ERROR(b.Synchronize());
    const double s = Seconds(t0);
    if (r >= 2) best = std::max(best, 2.0 * n * in * out / s / 1e12);
  }
  return best;
}

// Best of `reps` causal attentions at the model's head shape over `windows`
// windows of T tokens: TFLOP/s over the visible pairs.
absl::StatusOr<double> BestAttentionTflops(Backend& b,
                                           const care::ModelConfig& c,
                                           int64_t windows, int64_t T,
                                           int reps) {
  const care::compute::AttentionShape s{.windows = windows,
                                        .seq_len = T,
                                        .heads = c.num_attention_heads,
                                        .kv_heads = c.num_key_value_heads,
                                        .head_dim = c.head_dim};
  const int64_t n = windows * T;
  std::vector<float> qh(n * s.heads * s.head_dim, 0.01f);
  std::vector<float> kvh(n * s.kv_heads * s.head_dim, 0.02f);
  CARE_ASSIGN_OR_RETURN(care::compute::Matrix q,
                        b.Upload(qh.data(), n, s.heads * s.head_dim));
  CARE_ASSIGN_OR_RETURN(care::compute::Matrix k,
                        b.Upload(kvh.data(), n, s.kv_heads * s.head_dim));
  CARE_ASSIGN_OR_RETURN(care::compute::Matrix v,
                        b.Upload(kvh.data(), n, s.kv_heads * s.head_dim));
  CARE_ASSIGN_OR_RETURN(care::compute::Matrix out,
                        b.Allocate(n, s.heads * s.head_dim));
  const double flop = 4.0 * s.head_dim * (T * (T + 1) / 2.0) * s.heads *
                      static_cast<double>(windows);
  double best = 0;
  for (int r = 0; r < reps + 1; ++r) {
    CARE_RETURN_IF_ERROR(b.Synchronize());
    const auto t0 = Clock::now();
    CARE_RETURN_IF_ERROR(b.CausalAttention(s, q, k, v, &out));
    CARE_RETURN_IF_ERROR(b.Synchronize());
    if (r >= 1) best = std::max(best, flop / Seconds(t0) / 1e12);
  }
  return best;
}

absl::StatusOr<Phase> Calibrate(Backend& b, const care::io::Model& model,
                                const std::string& device, int64_t windows,
                                int64_t T) {
  const care::ModelConfig& c = model.config;
  care::engine::TokenWindows tw{windows, T,
                                RandomIds(windows * T, c.vocab_size, 7)};
  care::bench::ResetCudaPeak(b);
  const auto s0 = care::bench::CudaStats(b);
  const auto t0 = Clock::now();
  care::engine::EngineOptions options;
  options.device = device;
  options.prefetch_weights = true;
  CARE_ASSIGN_OR_RETURN(auto fwd, care::engine::LayerwiseForward::Create(
                                      c, *model.weights, tw, options));
  care::engine::LayerHooks hooks;
  int64_t grams = 0;
  hooks.on_kv_input = [&](int64_t, const care::compute::Matrix& x) {
    CARE_ASSIGN_OR_RETURN(care::compute::Gram g, b.NewGram(x.cols));
    CARE_RETURN_IF_ERROR(b.GramAdd(x, &g));
    CARE_ASSIGN_OR_RETURN(care::compute::GramHost h, b.GramDownload(g));
    grams += h.tokens > 0;
    return absl::OkStatus();
  };
  CARE_RETURN_IF_ERROR(fwd->RunLayers(fwd->num_layers(), hooks));
  CARE_RETURN_IF_ERROR(b.Synchronize());
  Phase p;
  p.seconds = Seconds(t0);
  p.delta = Delta(s0, care::bench::CudaStats(b));
  if (p.delta) p.issued_flop = p.delta->gemm_flop + p.delta->attention_flop;
  const double D = c.hidden_size;
  p.model_flop =
      LayerFlops(c, windows, T) + grams * double(windows * T) * D * (D + 1);
  return p;
}

absl::StatusOr<Phase> Evaluate(Backend& b, const care::io::Model& model,
                               const std::string& device, int64_t windows,
                               int64_t T, double* nll_mean,
                               double* layers_seconds) {
  const care::ModelConfig& c = model.config;
  // T input tokens per window: windows of T + 1 stream tokens.
  CARE_ASSIGN_OR_RETURN(care::engine::EvalWindows ev,
                        care::engine::MakeEvalWindows(
                            RandomIds(windows * (T + 1), c.vocab_size, 11),
                            {.seq_len = T + 1, .max_windows = windows}));
  care::bench::ResetCudaPeak(b);
  const auto s0 = care::bench::CudaStats(b);
  const auto t0 = Clock::now();
  care::engine::EngineOptions options;
  options.device = device;
  options.prefetch_weights = true;
  CARE_ASSIGN_OR_RETURN(auto fwd, care::engine::LayerwiseForward::Create(
                                      c, *model.weights, ev.inputs, options));
  const auto t1 = Clock::now();
  CARE_RETURN_IF_ERROR(fwd->RunLayers(fwd->num_layers()));
  CARE_RETURN_IF_ERROR(b.Synchronize());
  *layers_seconds = Seconds(t1);
  CARE_ASSIGN_OR_RETURN(care::engine::NllSum nll,
                        fwd->ScoreTargets(ev.targets));
  CARE_RETURN_IF_ERROR(b.Synchronize());
  Phase p;
  p.seconds = Seconds(t0);
  p.delta = Delta(s0, care::bench::CudaStats(b));
  if (p.delta) p.issued_flop = p.delta->gemm_flop + p.delta->attention_flop;
  p.model_flop = LayerFlops(c, windows, ev.inputs.seq_len) +
                 2.0 * c.hidden_size * c.vocab_size * nll.count;
  *nll_mean = nll.mean();
  return p;
}

std::string PhaseLine(const char* name, const Phase& p, double ceiling,
                      double peak) {
  const double tf = p.model_flop / p.seconds / 1e12;
  std::string s = absl::StrFormat(
      "%s: %.3f s, %.4g TFLOP (model) -> %.4g TFLOP/s = %.0f%% of the "
      "measured GEMM",
      name, p.seconds, p.model_flop / 1e12, tf, 100 * tf / ceiling);
  if (peak > 0) absl::StrAppendFormat(&s, ", %.0f%% of peak", 100 * tf / peak);
  if (p.delta) {
    absl::StrAppendFormat(&s, "; issued by the backend %.1f TFLOP",
                          p.issued_flop / 1e12);
  }
  return s;
}

std::string CopyLine(const char* name, const Phase& p) {
  if (!p.delta) return absl::StrCat("copy ", name, ": n/a (not cuda)");
  const CareCudaStats& d = *p.delta;
  const double share = d.copy_ms > 0 ? 100 * d.copy_hidden_ms / d.copy_ms : 0;
  return absl::StrFormat(
      "copy %s: %d weights, %.2f GB in %.0f ms of copy stream (%.1f GB/s), "
      "%.0f%% hidden behind compute, %.0f ms exposed; host staging %.0f ms",
      name, d.weights_loaded, d.weight_bytes_copied / 1e9, d.copy_ms,
      d.copy_ms > 0 ? d.weight_bytes_copied / d.copy_ms / 1e6 : 0, share,
      d.copy_exposed_ms, d.host_staging_ms);
}

std::string MemoryLine(const char* name, const Phase& p) {
  if (!p.delta) return absl::StrCat("memory ", name, ": n/a (not cuda)");
  return absl::StrFormat(
      "memory %s: peak %.2f GiB of %.1f GiB (backend "
      "allocations)",
      name, p.delta->device_bytes_peak / double(1 << 30),
      p.delta->device_bytes_total / double(1 << 30));
}

std::string JsonPhase(const Phase& p) {
  std::string s = absl::StrFormat(
      "{\"seconds\": %.6f, \"model_tflop\": %.6f, \"issued_tflop\": %.6f",
      p.seconds, p.model_flop / 1e12, p.issued_flop / 1e12);
  if (p.delta) {
    const CareCudaStats& d = *p.delta;
    absl::StrAppendFormat(
        &s,
        ", \"weight_bytes\": %d, \"copy_ms\": %.3f, \"copy_hidden_ms\": "
        "%.3f, \"copy_exposed_ms\": %.3f, \"host_staging_ms\": %.3f, "
        "\"peak_device_bytes\": %d",
        d.weight_bytes_copied, d.copy_ms, d.copy_hidden_ms, d.copy_exposed_ms,
        d.host_staging_ms, d.device_bytes_peak);
  }
  return s + "}";
}

absl::Status Run(const std::vector<std::string>& args) {
  CARE_ASSIGN_OR_RETURN(care::Flags flags, care::Flags::Parse(args, {}));
  CARE_RETURN_IF_ERROR(
      flags.CheckKnown({"model", "device", "calib-windows", "calib-len",
                        "eval-windows", "eval-len", "json"}));
  CARE_ASSIGN_OR_RETURN(std::string dir, flags.Required("model"));
  const std::string device = flags.StringOr("device", "cuda");
  CARE_ASSIGN_OR_RETURN(int64_t cw, flags.IntOr("calib-windows", 256));
  CARE_ASSIGN_OR_RETURN(int64_t cl, flags.IntOr("calib-len", 32));
  CARE_ASSIGN_OR_RETURN(int64_t ew, flags.IntOr("eval-windows", 8));
  CARE_ASSIGN_OR_RETURN(int64_t el, flags.IntOr("eval-len", 2048));
  const std::string json = flags.StringOr("json", "");

  CARE_ASSIGN_OR_RETURN(Backend * b, care::compute::SharedBackend(device));
  const care::bench::CardPeak peak = care::bench::PeakFor(b->name());
  std::printf("device: %s\n", b->name().c_str());
  if (peak.bf16_dense_tflops > 0) {
    std::printf("device: dense BF16 peak %.1f TFLOP/s (%s)\n",
                peak.bf16_dense_tflops, peak.source.c_str());
  } else {
    std::printf(
        "device: card not in the peak table; ratios to the "
        "measured GEMM only\n");
  }
  CARE_ASSIGN_OR_RETURN(care::io::Model model,
                        care::io::OpenModel(dir, care::engine::Families()));
  const care::ModelConfig& c = model.config;
  std::printf("note: model %s: %lld layers, D %lld, I %lld, vocab %lld\n",
              dir.c_str(), static_cast<long long>(c.num_hidden_layers),
              static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.intermediate_size),
              static_cast<long long>(c.vocab_size));

  // The ceiling: an MLP-shaped bf16 GEMM (calibration-sized rows).
  const bool small = b->kind() != care::compute::DeviceKind::kCuda;
  CARE_ASSIGN_OR_RETURN(double ceiling,
                        BestGemmTflops(*b, small ? 512 : 8192, c.hidden_size,
                                       c.intermediate_size, small ? 1 : 10));
  std::printf(
      "ceiling: GEMM (bf16 weights on cuda) [%d, %lld] x [%lld, %lld]^T: %.4g "
      "TFLOP/s",
      small ? 512 : 8192, static_cast<long long>(c.hidden_size),
      static_cast<long long>(c.intermediate_size),
      static_cast<long long>(c.hidden_size), ceiling);
  if (peak.bf16_dense_tflops > 0) {
    std::printf(" = %.0f%% of peak", 100 * ceiling / peak.bf16_dense_tflops);
  }
  std::printf("\n");
  // Attention alone at the evaluation shape: its share of the evaluation
  // time is what a tensor-core kernel would buy back (docs/gpu.md).
  const int64_t aw = small ? 1 : ew, at = small ? 128 : el;
  CARE_ASSIGN_OR_RETURN(double attn,
                        BestAttentionTflops(*b, c, aw, at, small ? 1 : 3));
  std::printf(
      "ceiling: causal attention %lldx%lld, %lld heads / %lld kv, "
      "head_dim %lld: %.4g TFLOP/s (on cuda: the fp32 flash kernel)\n",
      static_cast<long long>(aw), static_cast<long long>(at),
      static_cast<long long>(c.num_attention_heads),
      static_cast<long long>(c.num_key_value_heads),
      static_cast<long long>(c.head_dim), attn);

  CARE_ASSIGN_OR_RETURN(Phase cal, Calibrate(*b, model, device, cw, cl));
  std::printf("%s\n",
              PhaseLine(absl::StrCat("calibration ", cw, "x", cl).c_str(), cal,
                        ceiling, peak.bf16_dense_tflops)
                  .c_str());
  std::printf("%s\n%s\n", CopyLine("calibration", cal).c_str(),
              MemoryLine("calibration", cal).c_str());
  double nll = 0, layers_s = 0;
  CARE_ASSIGN_OR_RETURN(Phase ev,
                        Evaluate(*b, model, device, ew, el, &nll, &layers_s));
  std::printf("%s\n",
              PhaseLine(absl::StrCat("evaluation ", ew, "x", el).c_str(), ev,
                        ceiling, peak.bf16_dense_tflops)
                  .c_str());
  std::printf("evaluation: layers %.3f s, mean NLL %.4f (random ids)\n",
              layers_s, nll);
  std::printf("%s\n%s\n", CopyLine("evaluation", ev).c_str(),
              MemoryLine("evaluation", ev).c_str());

  if (!json.empty()) {
    FILE* f = std::fopen(json.c_str(), "w");
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write --json ", json));
    }
    std::fprintf(f,
                 "{\"device\": \"%s\", \"peak_bf16_dense_tflops\": %.1f, "
                 "\"gemm_ceiling_tflops\": %.3f, \"attention_tflops\": %.3f, "
                 "\"layers\": %lld, "
                 "\"calibration\": %s, \"evaluation\": %s}\n",
                 b->name().c_str(), peak.bf16_dense_tflops, ceiling, attn,
                 static_cast<long long>(c.num_hidden_layers),
                 JsonPhase(cal).c_str(), JsonPhase(ev).c_str());
    std::fclose(f);
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const absl::Status st = Run(std::vector<std::string>(argv + 1, argv + argc));
  if (!st.ok()) {
    std::cerr << "gpu_bench: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
