#include "mla_export/heal_test_util.h"

#include <cmath>

namespace care::convert::testing {

template <typename S>
HealMatrix<S> Gaussian(int64_t rows, int64_t cols, double sigma,
                       std::mt19937_64& rng) {
  std::normal_distribution<double> n(0.0, sigma);
  HealMatrix<S> m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<S>(n(rng));
  return m;
}

template <typename S>
HealAttention<S> RandomAttention(const HealShape& s, int64_t t_len,
                                 std::mt19937_64& rng) {
  HealAttention<S> a;
  a.shape = s;
  a.seq_len = t_len;
  a.cos.resize(t_len, s.rope_dim / 2);
  a.sin.resize(t_len, s.rope_dim / 2);
  for (int64_t p = 0; p < t_len; ++p) {
    for (int64_t i = 0; i < s.rope_dim / 2; ++i) {
      const double th = p * std::pow(10000.0, -2.0 * i / s.rope_dim);
      a.cos(p, i) = static_cast<S>(std::cos(th));
      a.sin(p, i) = static_cast<S>(std::sin(th));
    }
  }
  a.scale = static_cast<S>(
      1.0 / std::sqrt(static_cast<double>(s.head_dim + s.rope_dim)));
  a.o_proj = Gaussian<S>(s.hidden, s.num_heads * s.head_dim, 0.5, rng);
  return a;
}

template <typename S>
HealParams<S> RandomParams(const HealShape& s, double sigma,
                           std::mt19937_64& rng) {
  HealParams<S> p;
  const int64_t hd = s.num_heads * s.head_dim;
  p.q_nope = Gaussian<S>(hd, s.hidden, sigma, rng);
  p.q_pe = Gaussian<S>(s.num_heads * s.rope_dim, s.hidden, sigma, rng);
  p.w_down = Gaussian<S>(s.hidden, s.rank, sigma, rng);
  p.w_pe = Gaussian<S>(s.rope_dim, s.hidden, sigma, rng);
  p.up_k = Gaussian<S>(s.rank, hd, sigma, rng);
  p.up_v = Gaussian<S>(s.rank, hd, sigma, rng);
  return p;
}

template <typename S>
HealRecoveryProblem<S> MakeRecoveryProblem() {
  constexpr int64_t kT = HealRecoveryProblem<S>::kT;
  HealRecoveryProblem<S> pr;
  std::mt19937_64 rng(11);
  pr.a = RandomAttention<S>(pr.shape, kT, rng);
  const HealParams<S> teacher = RandomParams<S>(pr.shape, 0.35, rng);
  pr.x_train = Gaussian<S>(48 * kT, pr.shape.hidden, 1.0, rng);
  pr.x_held = Gaussian<S>(8 * kT, pr.shape.hidden, 1.0, rng);
  pr.y_train = *mla::HealOutput<S>(pr.a, teacher, pr.x_train);
  pr.y_held = *mla::HealOutput<S>(pr.a, teacher, pr.x_held);
  pr.start = teacher;
  for (int b = 0; b < HealParams<S>::kBlocks; ++b) {
    HealMatrix<S>& m = pr.start.block(b);
    const double rms = std::sqrt(m.template cast<double>().squaredNorm() /
                                 static_cast<double>(m.size()));
    m += Gaussian<S>(m.rows(), m.cols(), 0.3 * rms, rng);
  }
  return pr;
}

#define CARE_HEAL_TEST_INSTANTIATE(S)                                     \
  template HealMatrix<S> Gaussian<S>(int64_t, int64_t, double,            \
                                     std::mt19937_64&);                   \
  template HealAttention<S> RandomAttention<S>(const HealShape&, int64_t, \
                                               std::mt19937_64&);         \
  template HealParams<S> RandomParams<S>(const HealShape&, double,        \
                                         std::mt19937_64&);               \
  template HealRecoveryProblem<S> MakeRecoveryProblem<S>();

CARE_HEAL_TEST_INSTANTIATE(float)
CARE_HEAL_TEST_INSTANTIATE(double)
#undef CARE_HEAL_TEST_INSTANTIATE

}  // namespace care::convert::testing
