// Row-wise causal softmax of a window's scores [T, T] in place: row p over
// keys t ≤ p (max-shifted), zeros above the diagonal. Shared by the host
// fits and references that recompute the source's attention (NoPE
// correction, attended inputs, GQA reference attention, healing).
#ifndef CARE_CONVERT_MLA_EXPORT_CAUSAL_SOFTMAX_H_
#define CARE_CONVERT_MLA_EXPORT_CAUSAL_SOFTMAX_H_

#include <Eigen/Core>
#include <cmath>
#include <cstdint>

namespace care::convert::mla {

template <typename Derived>
void CausalSoftmax(Eigen::MatrixBase<Derived>& s) {
  using S = typename Derived::Scalar;
  const int64_t t_len = s.rows();
  for (int64_t p = 0; p < t_len; ++p) {
    const S mx = s.row(p).head(p + 1).maxCoeff();
    S z = 0;
    for (int64_t t = 0; t <= p; ++t) z += (s(p, t) = std::exp(s(p, t) - mx));
    s.row(p).head(p + 1) /= z;
    s.row(p).tail(t_len - p - 1).setZero();
  }
}

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_CAUSAL_SOFTMAX_H_
