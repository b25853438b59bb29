// CpuBackend::CausalAttention: exact softmax per block of 128 queries, one
// OpenMP task per (window, head, query block).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cpu_backend.h"

namespace care::compute::cpu {

namespace {
// Query rows per block: keys beyond the block's last row are never needed,
// so blocking skips most of the masked upper triangle.
constexpr int64_t kQueryBlock = 128;

using StridedMap =
    Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<Eigen::Dynamic>>;
using StridedMapMut =
    Eigen::Map<MatrixRM, 0, Eigen::OuterStride<Eigen::Dynamic>>;
}  // namespace

absl::Status CpuBackend::CausalAttention(const AttentionShape& s,
                                         const Matrix& q, const Matrix& k,
                                         const Matrix& v, Matrix* out) {
  if (s.windows < 1 || s.seq_len < 1 || s.heads < 1 || s.kv_heads < 1 ||
      s.head_dim < 1 || s.v_head_dim < 0 || s.heads % s.kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CausalAttention: bad shape windows ", s.windows, ", seq_len ",
        s.seq_len, ", heads ", s.heads, ", kv_heads ", s.kv_heads,
        ", head_dim ", s.head_dim, ", v_head_dim ", s.v_head_dim,
        " (kv_heads must divide heads)"));
  }
  const int64_t T = s.seq_len, dh = s.head_dim, dv = s.value_dim();
  const int64_t n = s.windows * T;
  CARE_RETURN_IF_ERROR(CheckShape("CausalAttention", "q", q, n, s.heads * dh));
  CARE_RETURN_IF_ERROR(
      CheckShape("CausalAttention", "k", k, n, s.kv_heads * dh));
  CARE_RETURN_IF_ERROR(
      CheckShape("CausalAttention", "v", v, n, s.kv_heads * dv));
  CARE_RETURN_IF_ERROR(
      CheckShape("CausalAttention", "out", *out, n, s.heads * dv));
  const int64_t group = s.heads / s.kv_heads;
  const int64_t q_stride = q.cols, k_stride = k.cols, v_stride = v.cols;
  const int64_t o_stride = out->cols;
  const float scale = s.scale > 0 ? static_cast<float>(s.scale)
                                  : 1.0f / std::sqrt(static_cast<float>(dh));
  const int64_t blocks = (T + kQueryBlock - 1) / kQueryBlock;
  const float* qd = q.data;
  const float* kd = k.data;
  const float* vd = v.data;
  float* od = out->data;
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
          StridedMap qb(qd + (base + row0) * q_stride + h * dh, rows, dh,
                        Eigen::OuterStride<Eigen::Dynamic>(q_stride));
          StridedMap kb(kd + base * k_stride + kv_h * dh, keys, dh,
                        Eigen::OuterStride<Eigen::Dynamic>(k_stride));
          StridedMap vb(vd + base * v_stride + kv_h * dv, keys, dv,
                        Eigen::OuterStride<Eigen::Dynamic>(v_stride));
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
          StridedMapMut ob(od + (base + row0) * o_stride + h * dv, rows, dv,
                           Eigen::OuterStride<Eigen::Dynamic>(o_stride));
          ob.noalias() = scores * vb;  // [rows, d_v]
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace care::compute::cpu
