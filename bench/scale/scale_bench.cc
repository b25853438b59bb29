// scale_bench: where a conversion's time goes. Reads the care_report.json of
// a `care-worker convert` run (and optionally the `/usr/bin/time -v` output
// of that run), computes each stage's useful FLOPs (flop_model.h), measures
// the fp32 GEMM ceiling of this machine now, and prints one markdown table:
// wall seconds, GFLOP, GFLOP/s and ratio to the ceiling per stage, CPU time
// and peak RSS. See docs/performance.md "Scale".
//
//   scale_bench --model DIR --report care_report.json [--time FILE]
//               [--threads N] [--label NAME]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/convert/flop_model.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/io/file_util.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "gemm_ceiling.h"

namespace {

using Clock = std::chrono::steady_clock;
using care::bench::CpuSeconds;
using nlohmann::json;

// "User time (seconds): 12.3" etc. from /usr/bin/time -v.
double TimeField(const std::string& text, const std::string& key) {
  const size_t p = text.find(key);
  if (p == std::string::npos) return 0;
  return std::atof(text.c_str() + p + key.size());
}

absl::StatusOr<json> ParseJsonFile(const std::string& path) {
  CARE_ASSIGN_OR_RETURN(std::string text, care::io::ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(path + " is not a JSON object");
  }
  return j;
}

double Num(const json& j, const char* a, const char* b = nullptr) {
  const json* x = &j;
  for (const char* k : {a, b}) {
    if (k == nullptr) break;
    if (!x->is_object() || !x->contains(k)) return 0;
    x = &(*x)[k];
  }
  return x->is_number() ? x->get<double>() : 0;
}

absl::Status Run(const std::vector<std::string>& args) {
  CARE_ASSIGN_OR_RETURN(care::Flags flags, care::Flags::Parse(args, {}));
  CARE_RETURN_IF_ERROR(
      flags.CheckKnown({"model", "report", "time", "threads", "label"}));
  CARE_ASSIGN_OR_RETURN(std::string dir, flags.Required("model"));
  CARE_ASSIGN_OR_RETURN(std::string report_path, flags.Required("report"));
  CARE_ASSIGN_OR_RETURN(int64_t threads, flags.IntOr("threads", 0));
  const std::string label = flags.StringOr("label", dir);
  care::engine::SetEngineThreads(static_cast<int>(threads));

  CARE_ASSIGN_OR_RETURN(std::string config_text,
                        care::io::ReadFileToString(dir + "/config.json"));
  CARE_ASSIGN_OR_RETURN(
      care::ModelConfig c,
      care::ParseModelConfig(config_text, dir, care::engine::Families()));
  CARE_ASSIGN_OR_RETURN(json r, ParseJsonFile(report_path));
  const json& t = r["timings_s"];
  if (!t.is_object()) {
    return absl::InvalidArgumentError(report_path + " has no timings_s");
  }
  const int64_t T = static_cast<int64_t>(Num(r, "calibration", "seq_len"));
  const int64_t cal = static_cast<int64_t>(Num(r, "calibration", "tokens"));
  const int64_t held =
      static_cast<int64_t>(Num(r, "calibration", "heldout_tokens"));
  if (T < 2 || cal < 1 || held < 1) {
    return absl::InvalidArgumentError(report_path +
                                      ": calibration counts missing");
  }
  const int64_t held_windows = held / T;
  const int64_t held_scored = held_windows * (T - 1);
  const int64_t candidates =
      r["candidates"].is_array() ? r["candidates"].size() : 1;

  struct Stage {
    std::string name;
    double seconds, flops;
  };
  std::vector<Stage> stages;
  const double decompose = Num(t, "decompose");
  // The engine part of "calibrate" (the pass minus the per-layer fits).
  stages.push_back(
      {"calibrate (forward)", Num(t, "calibrate") - decompose,
       care::convert::ForwardFlops(c, (cal + held) / T, T, held_scored)});
  stages.push_back({"decompose (cov + Grams + factorization)", decompose, 0});
  stages.push_back({"allocate", Num(t, "allocate"),
                    candidates * care::convert::ForwardFlops(c, held_windows, T,
                                                             held_scored)});
  if (r.contains("original")) {
    const int64_t w = static_cast<int64_t>(Num(r, "original", "windows"));
    const int64_t p = static_cast<int64_t>(Num(r, "original", "predictions"));
    stages.push_back(
        {"evaluate (original + converted)", Num(t, "evaluate"),
         w > 0 ? 2 * care::convert::ForwardFlops(c, w, p / w, p) : 0});
  }
  stages.push_back({"load", Num(t, "load"), 0});
  stages.push_back({"write", Num(t, "write"), 0});

  const care::bench::GemmCeiling ceil =
      care::bench::MeasureGemmCeiling({2048, 3072}, /*verbose=*/false);
  double total_s = 0, total_f = 0;
  std::printf(
      "%s: %lld layers, D %lld, calibration %lld x %lld + %lld "
      "held-out tokens\n",
      label.c_str(), static_cast<long long>(c.num_hidden_layers),
      static_cast<long long>(c.hidden_size), static_cast<long long>(cal / T),
      static_cast<long long>(T), static_cast<long long>(held));
  std::printf(
      "fp32 GEMM ceiling (now, %d threads): %.1f GFLOP/s wall, %.1f GFLOP "
      "per CPU-s\n\n",
      ceil.threads, ceil.wall_gflops, ceil.cpu_gflops);
  std::printf("| stage | wall s | GFLOP | GFLOP/s | of ceiling |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const Stage& s : stages) {
    total_s += s.seconds;
    total_f += s.flops;
    if (s.flops > 0 && s.seconds > 0) {
      std::printf("| %s | %.2f | %.0f | %.1f | %.0f%% |\n", s.name.c_str(),
                  s.seconds, s.flops / 1e9, s.flops / 1e9 / s.seconds,
                  100 * s.flops / 1e9 / s.seconds / ceil.wall_gflops);
    } else {
      std::printf("| %s | %.2f | | | |\n", s.name.c_str(), s.seconds);
    }
  }
  std::printf("| **total** | %.2f | %.0f | %.1f | %.0f%% |\n", total_s,
              total_f / 1e9, total_f / 1e9 / total_s,
              100 * total_f / 1e9 / total_s / ceil.wall_gflops);
  if (flags.Has("time")) {
    CARE_ASSIGN_OR_RETURN(std::string tv,
                          care::io::ReadFileToString(*flags.String("time")));
    const double cpu = TimeField(tv, "User time (seconds):") +
                       TimeField(tv, "System time (seconds):");
    const double rss_kb = TimeField(tv, "Maximum resident set size (kbytes):");
    std::printf(
        "\nCPU %.1f s (user + sys): %.1f GFLOP per CPU-s = %.0f%% of "
        "the GEMM's; peak RSS %.2f GiB\n",
        cpu, total_f / 1e9 / cpu, 100 * total_f / 1e9 / cpu / ceil.cpu_gflops,
        rss_kb / (1024.0 * 1024.0));
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help") {
    std::cerr << "usage: scale_bench --model DIR --report care_report.json "
                 "[--time FILE] [--threads N] [--label NAME]\n";
    return args.empty() ? 2 : 0;
  }
  const absl::Status st = Run(args);
  if (!st.ok()) {
    std::cerr << "scale_bench: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
