// Forward-engine benchmark: the fp32 GEMM ceiling of this machine (best of
// Eigen on large square matrices) and, in the same run, the engine's
// end-to-end forward + scoring over a checkpoint (e.g. care-synth
// --preset llama-3.2-1b): tokens/s, achieved GFLOP/s, ratio to the ceiling,
// peak RSS. See docs/performance.md "Forward engine".
//
//   engine_bench --model DIR [--windows 1] [--seq-len 2048] [--threads N]
//                [--device cpu] [--passes 1] [--prefetch 0|1] [--pool-mib N]
//                [--logits-block N] [--head-compare N1,N2,... --head-repeats R]
//
// --passes repeats the whole forward in one process (a conversion runs 3-4
// passes); --pool-mib sets the CPU backend's idle-buffer pool (0 frees every
// buffer, the behaviour before the pool); --prefetch converts layer l+1's
// weights on a background thread while layer l computes (docs/scale.md);
// --logits-block sets EngineOptions::logits_block_elements (the head's
// [rows, vocab chunk] block; default the engine's). --head-compare scores
// the last pass's hidden states again with each listed block size, R rounds
// interleaved (A B A B ...), and prints each variant's best and median CPU
// seconds and its NLL sum: on a shared machine, variants compared in one
// process and alternated see the same load.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/compute/cpu_backend.h"
#include "care/compute/registry.h"
#include "care/convert/flop_model.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/logits.h"
#include "care/engine/perplexity.h"
#include "care/io/deepseek_v3_config.h"
#include "care/io/model.h"
#include "gemm_ceiling.h"

namespace {

using care::bench::CpuSeconds;

care::bench::GemmCeiling GemmCeiling() {
  return care::bench::MeasureGemmCeiling({2048, 3072, 4096}, /*verbose=*/true);
}

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Peak resident set (VmHWM) in MiB.
double PeakRssMiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return 0;
}

absl::Status Run(const std::vector<std::string>& args) {
  CARE_ASSIGN_OR_RETURN(care::Flags flags, care::Flags::Parse(args, {}));
  CARE_RETURN_IF_ERROR(flags.CheckKnown(
      {"model", "windows", "seq-len", "threads", "device", "passes", "prefetch",
       "pool-mib", "logits-block", "head-compare", "head-repeats"}));
  CARE_ASSIGN_OR_RETURN(std::string dir, flags.Required("model"));
  CARE_ASSIGN_OR_RETURN(int64_t windows, flags.IntOr("windows", 1));
  CARE_ASSIGN_OR_RETURN(int64_t seq_len, flags.IntOr("seq-len", 2048));
  CARE_ASSIGN_OR_RETURN(int64_t threads, flags.IntOr("threads", 0));
  CARE_ASSIGN_OR_RETURN(int64_t passes, flags.IntOr("passes", 1));
  CARE_ASSIGN_OR_RETURN(int64_t prefetch, flags.IntOr("prefetch", 0));
  CARE_ASSIGN_OR_RETURN(int64_t pool_mib, flags.IntOr("pool-mib", -1));
  const std::string device = flags.StringOr("device", "cpu");
  care::engine::EngineOptions options;
  CARE_ASSIGN_OR_RETURN(
      options.logits_block_elements,
      flags.IntOr("logits-block", options.logits_block_elements));
  std::unique_ptr<care::compute::Backend> own_backend;
  options.device = device;
  options.prefetch_weights = prefetch != 0;
  if (pool_mib >= 0 && device == "cpu") {
    own_backend = care::compute::MakeCpuBackend(
        {.max_idle_bytes = static_cast<size_t>(pool_mib) << 20});
    options.backend = own_backend.get();
  }
  const int n_threads =
      care::engine::SetEngineThreads(static_cast<int>(threads));
  std::printf("threads %d\n", n_threads);
  // Measured before and after the forward; the better of the two is the
  // ceiling (on a shared machine either may be disturbed).
  const care::bench::GemmCeiling before = GemmCeiling();
  // Resets VmHWM (Linux >= 4.0) so the peak below is the engine's own.
  std::ofstream("/proc/self/clear_refs") << "5";

  CARE_ASSIGN_OR_RETURN(care::io::Model model,
                        care::io::OpenModel(dir, care::engine::Families()));
  const care::ModelConfig& c = model.config;
  // Plain windows of pseudo-random ids (content does not change the cost).
  std::vector<int32_t> stream(windows * seq_len);
  uint64_t s = 12345;
  for (auto& id : stream) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<int32_t>((s >> 33) % c.vocab_size);
  }
  CARE_ASSIGN_OR_RETURN(care::engine::EvalWindows ev,
                        care::engine::MakeEvalWindows(
                            stream, {.seq_len = seq_len, .bos = std::nullopt}));
  const int64_t tokens = ev.inputs.tokens();
  const int64_t T = ev.inputs.seq_len;

  double t_embed = 0, t_layers = 0, cpu_layers = 0, t_head = 0, cpu_head = 0,
         total = 0, cpu_total = 0;
  care::engine::NllSum nll;
  options.threads = n_threads;
  std::vector<std::pair<double, double>> pass_layers;  // (wall, CPU) s
  std::unique_ptr<care::engine::LayerwiseForward> last;
  for (int64_t pass = 0; pass < std::max<int64_t>(1, passes); ++pass) {
    const auto t0 = Clock::now();
    const double cpu0 = CpuSeconds();
    CARE_ASSIGN_OR_RETURN(auto fwd, care::engine::LayerwiseForward::Create(
                                        c, *model.weights, ev.inputs, options));
    t_embed = Seconds(t0);
    const auto t1 = Clock::now();
    const double cpu1 = CpuSeconds();
    CARE_RETURN_IF_ERROR(fwd->RunLayers(fwd->num_layers()));
    t_layers = Seconds(t1);
    cpu_layers = CpuSeconds() - cpu1;
    const auto t2 = Clock::now();
    const double cpu2 = CpuSeconds();
    CARE_ASSIGN_OR_RETURN(nll, fwd->ScoreTargets(ev.targets));
    t_head = Seconds(t2);
    cpu_head = CpuSeconds() - cpu2;
    total = Seconds(t0);
    cpu_total = CpuSeconds() - cpu0;
    pass_layers.emplace_back(t_layers, cpu_layers);
    last = std::move(fwd);
  }
  std::vector<int64_t> compare;
  for (absl::string_view b : absl::StrSplit(flags.StringOr("head-compare", ""),
                                            ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(b, &v) || v < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--head-compare: '", b, "' is not a block size"));
    }
    compare.push_back(v);
  }
  CARE_ASSIGN_OR_RETURN(int64_t head_repeats, flags.IntOr("head-repeats", 3));
  std::vector<std::vector<double>> head_cpu(compare.size());
  std::vector<double> head_sum(compare.size());
  for (int64_t r = 0; r < head_repeats && !compare.empty(); ++r) {
    for (size_t v = 0; v < compare.size(); ++v) {
      const double cpu0 = CpuSeconds();
      CARE_ASSIGN_OR_RETURN(care::engine::NllSum n,
                            care::engine::ScoreHiddenStates(
                                c, *model.weights, last->backend(),
                                last->hidden(), ev.targets, compare[v]));
      head_cpu[v].push_back(CpuSeconds() - cpu0);
      head_sum[v] = n.sum;
    }
  }
  const double peak_rss = PeakRssMiB();  // before the ceiling's matrices
  const care::bench::GemmCeiling after = GemmCeiling();
  const double ceiling = std::max(before.wall_gflops, after.wall_gflops);
  const double cpu_ceiling = std::max(before.cpu_gflops, after.cpu_gflops);
  std::printf(
      "fp32 GEMM ceiling (best of before/after): %.1f GFLOP/s wall, %.1f "
      "GFLOP per CPU-second (%s kernels)\n",
      ceiling, cpu_ceiling, after.isa);

  // Useful FLOPs: 2 per multiply-add of every projection; causal attention
  // 2·T·(T+1)/2·d_h for QKᵀ and again for PV per head and window; the head
  // over the scored tokens.
  const double D = c.hidden_size, dh = c.head_dim;
  const double qw = c.num_attention_heads * dh, kv = c.kv_width();
  const double per_token_layer =
      2 * (D * qw + 2 * D * kv + qw * D + 3 * D * c.intermediate_size);
  const double attn_per_window =
      2.0 * 2 * c.num_attention_heads * dh * (T * (T + 1) / 2.0);
  // deepseek_v3 (latent projections, routed + shared experts): the
  // conversion's FLOP model.
  const double layer_flops =
      c.fields<care::DeepseekV3Config>() != nullptr
          ? tokens * care::convert::LayerFlopsPerToken(c, T)
          : c.num_hidden_layers *
                (per_token_layer * tokens + attn_per_window * windows);
  const double head_flops = 2.0 * D * c.vocab_size * nll.count;
  const double gf_layers = layer_flops / t_layers / 1e9;
  const double gf_total = (layer_flops + head_flops) / total / 1e9;
  std::printf(
      "model %s: %lld layers, D %lld, %lld windows x %lld tokens\n"
      "  embed %.2f s, layers %.2f s (%.1f GFLOP/s, %.0f%% of ceiling; %.1f "
      "GFLOP per CPU-s, %.0f%%), head %.2f s\n"
      "  end to end %.2f s: %.0f tokens/s, %.1f GFLOP/s = %.0f%% of the GEMM "
      "ceiling\n"
      "  per CPU-second: %.1f GFLOP = %.0f%% of the GEMM's %.1f (CPU %.1f s)\n"
      "  mean NLL %.4f over %lld predictions\n"
      "  peak RSS %.0f MiB\n",
      dir.c_str(), static_cast<long long>(c.num_hidden_layers),
      static_cast<long long>(c.hidden_size), static_cast<long long>(windows),
      static_cast<long long>(T), t_embed, t_layers, gf_layers,
      100 * gf_layers / ceiling, layer_flops / cpu_layers / 1e9,
      100 * layer_flops / cpu_layers / 1e9 / cpu_ceiling, t_head, total,
      tokens / total, gf_total, 100 * gf_total / ceiling,
      (layer_flops + head_flops) / cpu_total / 1e9,
      100 * (layer_flops + head_flops) / cpu_total / 1e9 / cpu_ceiling,
      cpu_ceiling, cpu_total, nll.mean(), static_cast<long long>(nll.count),
      peak_rss);
  // The head: final norm, lm_head GEMM in vocabulary chunks (BF16 rows
  // converted per chunk) and the log-softmax; FLOPs of the GEMM only.
  std::printf(
      "  head + log-softmax: %.2f s wall (%.1f GFLOP/s, %.0f%% of ceiling), "
      "%.2f CPU-s (%.1f GFLOP per CPU-s, %.0f%% of the GEMM)\n",
      t_head, head_flops / t_head / 1e9,
      100 * head_flops / t_head / 1e9 / ceiling, cpu_head,
      head_flops / cpu_head / 1e9,
      100 * head_flops / cpu_head / 1e9 / cpu_ceiling);
  for (size_t p = 0; p < pass_layers.size(); ++p) {
    std::printf(
        "  pass %zu: layers %.2f s wall, %.2f CPU-s, %.1f GFLOP per CPU-s = "
        "%.0f%% of the GEMM\n",
        p + 1, pass_layers[p].first, pass_layers[p].second,
        layer_flops / pass_layers[p].second / 1e9,
        100 * layer_flops / pass_layers[p].second / 1e9 / cpu_ceiling);
  }
  std::printf(
      "  logits block %lld elements\n",
      static_cast<long long>(
          options.logits_block_elements > 0
              ? options.logits_block_elements
              : care::engine::DefaultLogitsBlockElements(last->backend())));
  for (size_t v = 0; v < compare.size(); ++v) {
    std::vector<double> t = head_cpu[v];
    std::sort(t.begin(), t.end());
    const double best = t.front(), median = t[t.size() / 2];
    std::printf(
        "  head, logits block %lld: best %.2f CPU-s (%.0f%% of the GEMM), "
        "median %.2f CPU-s (%.0f%%), NLL sum %.17g\n",
        static_cast<long long>(compare[v]), best,
        100 * head_flops / best / 1e9 / cpu_ceiling, median,
        100 * head_flops / median / 1e9 / cpu_ceiling, head_sum[v]);
  }
  std::printf(
      "  device %s, prefetch %s, pool %s\n", device.c_str(),
      options.prefetch_weights ? "on" : "off",
      pool_mib < 0 ? "default" : (std::to_string(pool_mib) + " MiB").c_str());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const absl::Status st = Run(std::vector<std::string>(argv + 1, argv + argc));
  if (!st.ok()) {
    std::cerr << "engine_bench: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
