// Conversion benchmark (docs/performance.md, "Conversion pipeline"):
//  1. covariance accumulation C += xᵀx of [tokens, D] float32 activations,
//     against the float32 GEMM ceiling measured in the same run (a full
//     Xᵀ·X with Eigen on all threads; the accumulator does half the flops);
//  2. one layer's factorization (K and V) at a real model's shape: Cholesky
//     whitening, S·W, the spectrum of S·W (eigenpairs of its Gram), and
//     truncation, against the float64 GEMM ceiling.
//   convert_bench [--dim D] [--kv-width W] [--tokens N] [--threads T]
#include <omp.h>

#include <Eigen/Core>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/flags.h"
#include "care/convert/covariance.h"
#include "care/convert/factorize.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best of 3 of a full [n, n] += [k, n]ᵀ·[k, n] product.
template <typename Scalar>
double GemmGflops(int64_t k, int64_t n) {
  using M = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const M a = M::Random(k, n);
  M c = M::Zero(n, n);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    c.noalias() += a.transpose() * a;
    best = std::max(best, 2.0 * k * n * n / Seconds(t0) / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags =
      care::Flags::Parse(std::vector<std::string>(argv + 1, argv + argc), {});
  if (!flags.ok()) {
    std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  const int64_t d = flags->IntOr("dim", 4096).value_or(4096);
  const int64_t out = flags->IntOr("kv-width", 1024).value_or(1024);
  const int64_t tokens = flags->IntOr("tokens", 8192).value_or(8192);
  const int64_t threads = flags->IntOr("threads", 0).value_or(0);
  if (threads > 0) {
    omp_set_num_threads(static_cast<int>(threads));
    Eigen::setNbThreads(static_cast<int>(threads));
  }
  std::printf("threads %d, D %ld, g*d_h %ld, tokens %ld\n",
              omp_get_max_threads(), d, out, tokens);

  // 1. Covariance.
  const double f32_ceiling = GemmGflops<float>(tokens, d);
  const care::MatrixRM x = care::MatrixRM::Random(tokens, d);  // [tokens, D]
  care::convert::CovarianceAccumulator acc(d);
  const auto t0 = Clock::now();
  if (!acc.Add(x).ok()) return 1;
  const double cov_s = Seconds(t0);
  const double useful = static_cast<double>(tokens) * d * (d + 128);  // SYRK
  const double full_equiv = 2.0 * tokens * d * d;
  std::printf(
      "covariance: %.3f s for %ld tokens (%.0f tokens/s); %.1f GFLOP/s "
      "executed (%.0f%% of the %.1f GFLOP/s fp32 GEMM ceiling), %.1f GFLOP/s "
      "full-GEMM equivalent (%.2fx the ceiling, from the symmetry)\n",
      cov_s, tokens, tokens / cov_s, useful / cov_s / 1e9,
      100 * useful / cov_s / 1e9 / f32_ceiling, f32_ceiling,
      full_equiv / cov_s / 1e9, full_equiv / cov_s / 1e9 / f32_ceiling);

  // 2. One layer: K and V share S.
  const double f64_ceiling = GemmGflops<double>(out, d);
  care::convert::LayerStatistics stats{acc.Covariance(), acc.MeanAbs(),
                                       acc.tokens()};
  const care::MatrixRM w_k = care::MatrixRM::Random(d, out);  // [D, g·d_h]
  const care::MatrixRM w_v = care::MatrixRM::Random(d, out);
  auto t1 = Clock::now();
  auto scaling = care::convert::BuildScaling(stats, {});
  if (!scaling.ok()) return 1;
  const double chol_s = Seconds(t1);
  t1 = Clock::now();
  auto dk = care::convert::Decompose(*scaling, w_k);
  auto dv = care::convert::Decompose(*scaling, w_v);
  if (!dk.ok() || !dv.ok()) return 1;
  const double svd_s = Seconds(t1);
  t1 = Clock::now();
  auto fk = care::convert::Truncate(*dk, w_k, out / 4);
  auto fv = care::convert::Truncate(*dv, w_v, out / 4);
  if (!fk.ok() || !fv.ok()) return 1;
  const double trunc_s = Seconds(t1);
  // Flop model: Cholesky D³/3; S·W 2·D²·out (dense triangular product as
  // GEMM) per matrix; thin SVD of [D, out] ≈ 4·D·out² + 8·out³ per matrix.
  const double flops =
      d * d * d / 3.0 +
      2 * (2.0 * d * d * out + 4.0 * d * out * out + 8.0 * out * out * out);
  const double layer_s = chol_s + svd_s + trunc_s;
  std::printf(
      "factorize one layer (K+V): %.2f s (Cholesky %.2f, S·W + spectrum %.2f, "
      "truncate %.3f); ~%.1f GFLOP/s model flops = %.0f%% of the %.1f "
      "GFLOP/s fp64 GEMM ceiling\n",
      layer_s, chol_s, svd_s, trunc_s, flops / layer_s / 1e9,
      100 * flops / layer_s / 1e9 / f64_ceiling, f64_ceiling);
  return 0;
}
