#include "care/convert/mla_export/rope_split.h"

#include <Eigen/Eigenvalues>
#include <vector>

#include "absl/strings/str_cat.h"

namespace care::convert::mla {

absl::Status CheckRopeSplitShape(const RopeSplitShape& s) {
  if (s.num_kv_heads < 1 || s.head_dim < 2 || s.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope split: need num_key_value_heads >= 1 and an even "
                     "head_dim, got ",
                     s.num_kv_heads, " and ", s.head_dim));
  }
  if (s.rope_dim < 2 || s.rope_dim % 2 != 0 || s.rope_dim > s.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("rope_dim ", s.rope_dim,
                                                   ": must be even and in [2, ",
                                                   s.head_dim, "] (head_dim)"));
  }
  if (s.freqfold < 1 || (s.rope_dim / 2) % s.freqfold != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("freqfold ", s.freqfold, ": must be >= 1 and divide ",
                     s.rope_dim / 2, " (rope_dim / 2)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<RopeSplit> SplitRope(const Eigen::MatrixXd& key_gram,
                                    const RopeSplitShape& shape) {
  if (absl::Status s = CheckRopeSplitShape(shape); !s.ok()) return s;
  const int64_t g = shape.num_kv_heads, dh = shape.head_dim;
  const int64_t half = dh / 2, width = g * dh, k = shape.freqfold;
  if (key_gram.rows() != width || key_gram.cols() != width) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope split: key Gram is ", key_gram.rows(), "x",
                     key_gram.cols(), ", expected ", width, "x", width));
  }
  if (!key_gram.allFinite()) {
    return absl::InvalidArgumentError(
        "rope split: key Gram contains NaN or inf");
  }
  RopeSplit out;
  out.shape = shape;
  out.pe = Eigen::MatrixXd::Zero(shape.rope_dim, width);
  // Channel c = (head j, frequency f0 + t) of a group, c = j·K + t; its
  // components are key dims x(c) and x(c) + d_h/2.
  const int64_t channels = g * k;
  for (int64_t f0 = 0; f0 < shape.rope_dim / 2; f0 += k) {
    auto dim = [&](int64_t c) { return (c / k) * dh + f0 + c % k; };
    // [gK, gK] second moment over both components (rotation-invariant).
    Eigen::MatrixXd m(channels, channels);
    for (int64_t a = 0; a < channels; ++a) {
      for (int64_t b = 0; b < channels; ++b) {
        m(a, b) =
            key_gram(dim(a), dim(b)) + key_gram(dim(a) + half, dim(b) + half);
      }
    }
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(m);
    // Top K eigenvectors (ascending order: the last K), strongest first,
    // each given the unassigned frequency of the group it loads most on.
    std::vector<bool> taken(k, false);
    for (int64_t e = 0; e < k; ++e) {
      const Eigen::VectorXd u = eig.eigenvectors().col(channels - 1 - e);
      int64_t best = -1;
      double best_load = -1;
      for (int64_t t = 0; t < k; ++t) {
        if (taken[t]) continue;
        double load = 0;
        for (int64_t j = 0; j < g; ++j) load += u(j * k + t) * u(j * k + t);
        if (load > best_load) best_load = load, best = t;
      }
      taken[best] = true;
      const int64_t pair = f0 + best;  // output pair = source frequency
      for (int64_t c = 0; c < channels; ++c) {
        out.pe(2 * pair, dim(c)) = u(c);
        out.pe(2 * pair + 1, dim(c) + half) = u(c);
      }
    }
  }
  const double total = key_gram.trace();
  if (total > 0) {
    out.rope_energy = (out.pe * key_gram * out.pe.transpose()).trace() / total;
  }
  return out;
}

}  // namespace care::convert::mla
