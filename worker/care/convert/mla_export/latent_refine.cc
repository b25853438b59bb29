#include "care/convert/mla_export/latent_refine.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <optional>

namespace care::convert::mla {
namespace {

// Conjugate-gradient iterations per A step: the operator is SPD and its
// size D·r; a warm start needs few.
constexpr int kCgIterations = 60;

// Below this many multiply-adds per [D, D]·[D, r] product the refinement
// runs Eigen on the calling thread: each conjugate-gradient step is a few
// such products, and at fixture sizes Eigen's parallel GEMM spent most of
// its time in OpenMP barriers (and minutes with two jobs on two cores).
constexpr double kParallelMultiplyAdds = 1 << 24;

// Eigen's thread count for one scope, restored after.
class EigenThreadsScope {
 public:
  explicit EigenThreadsScope(int threads) : saved_(Eigen::nbThreads()) {
    Eigen::setNbThreads(threads);
  }
  ~EigenThreadsScope() { Eigen::setNbThreads(saved_); }
  EigenThreadsScope(const EigenThreadsScope&) = delete;
  EigenThreadsScope& operator=(const EigenThreadsScope&) = delete;

 private:
  int saved_;
};

// One block of f: target W [D, d_h], moment C (damped) [D, D], output
// metric M [d_h, d_h], weight w.
struct Block {
  Eigen::MatrixXd w, c, m;
  double weight = 1;
};

Eigen::MatrixXd Damped(const Eigen::MatrixXd& c, double damping) {
  const int64_t d = c.rows();
  const double mean = d > 0 ? c.trace() / static_cast<double>(d) : 0.0;
  Eigen::MatrixXd out = c;
  out.diagonal().array() += damping * mean + 1e-300;
  return out;
}

// U = argmin tr((W − A·U)ᵀ·C·(W − A·U)·M) = (AᵀCA)⁻¹AᵀCW (M cancels).
Eigen::MatrixXd Regress(const Eigen::MatrixXd& a, const Block& b) {
  const Eigen::MatrixXd ca = b.c * a;  // [D, r]
  Eigen::MatrixXd gram = a.transpose() * ca;
  gram.diagonal().array() += 1e-12 * std::max(gram.trace(), 1e-300);
  return gram.ldlt().solve(ca.transpose() * b.w);  // [r, d_h]
}

double Objective(const Eigen::MatrixXd& a, const std::vector<Block>& blocks,
                 const std::vector<Eigen::MatrixXd>& u) {
  double f = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Eigen::MatrixXd e = blocks[i].w - a * u[i];  // [D, d_h]
    f += blocks[i].weight *
         (e.transpose() * blocks[i].c * e * blocks[i].m).trace();
  }
  return f;
}

}  // namespace

LatentRefineResult RefineLatent(const LatentRefineInputs& in,
                                const Eigen::MatrixXd& w_down) {
  const int64_t dh = in.head_dim;
  const int64_t g = static_cast<int64_t>(in.value_moments->size());
  const double d = static_cast<double>(w_down.rows());
  std::optional<EigenThreadsScope> serial;
  if (d * d * static_cast<double>(w_down.cols()) < kParallelMultiplyAdds) {
    serial.emplace(1);
  }
  const Eigen::MatrixXd ck = Damped(*in.covariance, in.damping);
  std::vector<Block> blocks;
  double energy_k = 0, energy_v = 0;
  for (int64_t j = 0; j < g; ++j) {
    Block k{in.w_k->middleCols(j * dh, dh), ck, {}, 1};
    const auto ks = in.metric->key_sqrt.block(j * dh, j * dh, dh, dh);
    k.m = ks * ks.transpose();
    Block v{in.w_v->middleCols(j * dh, dh),
            Damped((*in.value_moments)[j], in.damping),
            {},
            1};
    const auto vs = in.metric->value_sqrt.block(j * dh, j * dh, dh, dh);
    v.m = vs * vs.transpose();
    energy_k += (k.w.transpose() * k.c * k.w * k.m).trace();
    energy_v += (v.w.transpose() * v.c * v.w * v.m).trace();
    blocks.push_back(std::move(k));
    blocks.push_back(std::move(v));
  }
  // β²: equal weighted energy of the halves (as the joint fit's balance).
  const double beta2 = energy_k > 0 && energy_v > 0 ? energy_v / energy_k : 1;
  for (int64_t j = 0; j < g; ++j) blocks[2 * j].weight = beta2;
  const double total = beta2 * energy_k + energy_v;

  Eigen::MatrixXd a = w_down;
  std::vector<Eigen::MatrixXd> u(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) u[i] = Regress(a, blocks[i]);
  LatentRefineResult out;
  const double f0 = Objective(a, blocks, u);
  out.objective_before = total > 0 ? f0 / total : 0;
  for (int round = 0; round < in.rounds; ++round) {
    // A step: L(A) = Σ_b w_b·C_b·A·P_b with P_b = U_b·M_b·U_bᵀ [r, r].
    std::vector<Eigen::MatrixXd> p(blocks.size());
    Eigen::MatrixXd rhs = Eigen::MatrixXd::Zero(a.rows(), a.cols());
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Block& b = blocks[i];
      p[i] = b.weight * (u[i] * b.m * u[i].transpose());
      rhs.noalias() += b.weight * (b.c * b.w * b.m * u[i].transpose());
    }
    // The K blocks share C: one [D, D]·[D, r] product for all of them.
    Eigen::MatrixXd p_k = Eigen::MatrixXd::Zero(a.cols(), a.cols());
    for (int64_t j = 0; j < g; ++j) p_k += p[2 * j];
    auto apply = [&](const Eigen::MatrixXd& x) {
      Eigen::MatrixXd y = ck * (x * p_k);  // [D, r]
      for (int64_t j = 0; j < g; ++j) {
        y.noalias() += blocks[2 * j + 1].c * (x * p[2 * j + 1]);
      }
      return y;
    };
    Eigen::MatrixXd r = rhs - apply(a);
    Eigen::MatrixXd d = r;
    double rr = r.squaredNorm();
    const double stop = 1e-20 * rhs.squaredNorm();
    for (int it = 0; it < kCgIterations && rr > stop; ++it) {
      const Eigen::MatrixXd ld = apply(d);
      const double dld = (d.array() * ld.array()).sum();
      if (!(dld > 0)) break;
      const double step = rr / dld;
      a += step * d;
      r -= step * ld;
      const double rr_next = r.squaredNorm();
      d = r + (rr_next / rr) * d;
      rr = rr_next;
    }
    for (size_t i = 0; i < blocks.size(); ++i) u[i] = Regress(a, blocks[i]);
  }
  const double f1 = Objective(a, blocks, u);
  if (!(f1 < f0)) {  // keep the joint factorization's latent
    a = w_down;
    for (size_t i = 0; i < blocks.size(); ++i) u[i] = Regress(a, blocks[i]);
  }
  out.objective_after = total > 0 ? std::min(f0, f1) / total : 0;
  out.w_down = a;
  out.up_k.resize(a.cols(), g * dh);
  out.up_v.resize(a.cols(), g * dh);
  for (int64_t j = 0; j < g; ++j) {
    out.up_k.middleCols(j * dh, dh) = u[2 * j];
    out.up_v.middleCols(j * dh, dh) = u[2 * j + 1];
  }
  return out;
}

}  // namespace care::convert::mla
