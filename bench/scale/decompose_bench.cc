// decompose_bench: one layer's decomposition at a real shape (default
// Llama-3.1-8B: D 4096, g·d_h 1024), K and V one after the other (each with
// all threads) vs DecomposeLayer (K and V side by side, one thread each).
// Synthetic C = I + U·Uᵀ/r (U [D, 64]) and N(0, 0.02²) weights; the cost
// does not depend on the values.
//
//   decompose_bench [--dim 4096] [--kv-width 1024] [--reps 2] [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/convert/factorize.h"
#include "care/convert/latent_layer.h"
#include "care/engine/engine.h"

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

absl::Status Run(const std::vector<std::string>& args) {
  CARE_ASSIGN_OR_RETURN(care::Flags flags, care::Flags::Parse(args, {}));
  CARE_RETURN_IF_ERROR(
      flags.CheckKnown({"dim", "kv-width", "reps", "threads"}));
  CARE_ASSIGN_OR_RETURN(int64_t d, flags.IntOr("dim", 4096));
  CARE_ASSIGN_OR_RETURN(int64_t out, flags.IntOr("kv-width", 1024));
  CARE_ASSIGN_OR_RETURN(int64_t reps, flags.IntOr("reps", 2));
  CARE_ASSIGN_OR_RETURN(int64_t threads, flags.IntOr("threads", 0));
  care::engine::SetEngineThreads(static_cast<int>(threads));
  const Eigen::MatrixXd u = Eigen::MatrixXd::Random(d, 64);
  care::convert::LayerStatistics stats;
  stats.covariance = Eigen::MatrixXd::Identity(d, d) + u * u.transpose() / 64;
  stats.mean_abs = Eigen::VectorXd::Ones(d);
  stats.tokens = 8192;
  care::convert::LayerWeights w;
  w.w_k = care::MatrixRM::Random(d, out) * 0.02f;  // [D, g·d_h]
  w.w_v = care::MatrixRM::Random(d, out) * 0.02f;
  double best_seq = 1e30, best_par = 1e30;
  for (int64_t r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    CARE_ASSIGN_OR_RETURN(auto s, care::convert::BuildScaling(stats, {}));
    CARE_ASSIGN_OR_RETURN(auto dk, care::convert::Decompose(s, w.w_k));
    CARE_ASSIGN_OR_RETURN(auto dv, care::convert::Decompose(s, w.w_v));
    best_seq = std::min(best_seq, Since(t0));
    t0 = Clock::now();
    CARE_ASSIGN_OR_RETURN(auto layer,
                          care::convert::DecomposeLayer(w, stats, {}));
    best_par = std::min(best_par, Since(t0));
    if ((dk.singular_values - layer.k.singular_values).norm() >
        1e-9 * dk.singular_values.norm()) {
      return absl::InternalError("side-by-side K spectrum differs");
    }
  }
  std::printf(
      "D %lld, g*d_h %lld: K then V %.2f s, DecomposeLayer (K, V "
      "side by side) %.2f s, %.2fx\n",
      static_cast<long long>(d), static_cast<long long>(out), best_seq,
      best_par, best_seq / best_par);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const absl::Status st = Run(std::vector<std::string>(argv + 1, argv + argc));
  if (!st.ok()) {
    std::cerr << "decompose_bench: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
