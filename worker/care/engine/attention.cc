#include "care/engine/attention.h"

#include <algorithm>
#include <cmath>

#include "care/engine/parallel.h"

namespace care::engine {

using internal::kParallelMin;

namespace {
// Query rows per block: keys beyond the block's last row are never needed,
// so blocking skips most of the masked upper triangle.
constexpr int64_t kQueryBlock = 128;

using StridedMap =
    Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<Eigen::Dynamic>>;
using StridedMapMut =
    Eigen::Map<MatrixRM, 0, Eigen::OuterStride<Eigen::Dynamic>>;
}  // namespace

void CausalAttention(const AttentionShape& s, const MatrixRM& q,
                     const MatrixRM& k, const MatrixRM& v, MatrixRM* out) {
  const int64_t T = s.seq_len, dh = s.head_dim;
  const int64_t group = s.heads / s.kv_heads;
  const int64_t q_stride = q.cols(), kv_stride = k.cols();
  out->resize(q.rows(), q.cols());
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const int64_t blocks = (T + kQueryBlock - 1) / kQueryBlock;
  // One task per (window, head, query block); Eigen runs single-threaded
  // inside the parallel region.
#pragma omp parallel if (s.windows * s.heads * T * T >= kParallelMin)
  {
    MatrixRM scores;  // [block rows, keys]
#pragma omp for schedule(dynamic, 1) collapse(3)
    for (int64_t w = 0; w < s.windows; ++w) {
      for (int64_t h = 0; h < s.heads; ++h) {
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t kv_h = h / group;
          const int64_t row0 = b * kQueryBlock;
          const int64_t rows = std::min(kQueryBlock, T - row0);
          const int64_t keys = row0 + rows;  // causal: keys 0..row0+rows-1
          const int64_t base = w * T;
          StridedMap qb(q.data() + (base + row0) * q_stride + h * dh, rows, dh,
                        Eigen::OuterStride<Eigen::Dynamic>(q_stride));
          StridedMap kb(k.data() + base * kv_stride + kv_h * dh, keys, dh,
                        Eigen::OuterStride<Eigen::Dynamic>(kv_stride));
          StridedMap vb(v.data() + base * kv_stride + kv_h * dh, keys, dh,
                        Eigen::OuterStride<Eigen::Dynamic>(kv_stride));
          scores.resize(rows, keys);
          scores.noalias() = qb * kb.transpose();  // [rows, keys]
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t visible = row0 + r + 1;
            // Softmax over the visible keys (Eigen's vectorized exp); the
            // masked tail is zeroed so the PV product can run on the block.
            Eigen::Map<Eigen::ArrayXf> row(scores.data() + r * keys, keys);
            auto vis = row.head(visible);
            vis *= scale;
            vis = (vis - vis.maxCoeff()).exp();
            vis *= 1.0f / vis.sum();
            row.tail(keys - visible).setZero();
          }
          StridedMapMut ob(out->data() + (base + row0) * q_stride + h * dh,
                           rows, dh,
                           Eigen::OuterStride<Eigen::Dynamic>(q_stride));
          ob.noalias() = scores * vb;  // [rows, d_h]
        }
      }
    }
  }
}

}  // namespace care::engine
