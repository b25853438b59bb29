// CpuBackend::CausalAttentionBackward: per (window, KV head) one OpenMP
// task that owns that head's dk/dv rows and the dq rows of its query heads
// (no two tasks write the same output), recomputing the exact softmax per
// 128-query block as the forward does.
#include <algorithm>
#include <cmath>

#include "base/status_macros.h"
#include "care/compute/cpu_backend.h"
#include "care/compute/train_checks.h"

namespace care::compute::cpu {

namespace {
constexpr int64_t kQueryBlock = 128;  // as cpu_attention.cc

using StridedMap =
    Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<Eigen::Dynamic>>;
using StridedMapMut =
    Eigen::Map<MatrixRM, 0, Eigen::OuterStride<Eigen::Dynamic>>;
using Stride = Eigen::OuterStride<Eigen::Dynamic>;
}  // namespace

absl::Status CpuBackend::CausalAttentionBackward(
    const AttentionShape& s, const Matrix& q, const Matrix& k, const Matrix& v,
    const Matrix& out, const Matrix& d_out, Matrix* dq, Matrix* dk,
    Matrix* dv) {
  CARE_RETURN_IF_ERROR(
      CheckAttentionBackward(s, q, k, v, out, d_out, *dq, *dk, *dv));
  const int64_t T = s.seq_len, dh = s.head_dim, dval = s.value_dim();
  const int64_t group = s.heads / s.kv_heads;
  const float scale = s.scale > 0 ? static_cast<float>(s.scale)
                                  : 1.0f / std::sqrt(static_cast<float>(dh));
  const int64_t blocks = (T + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel if (s.windows * s.heads * T * T >= kParallelMin)
  {
    MatrixRM p, dp;         // [block rows, keys]
    Eigen::VectorXf d_row;  // [block rows] D_i
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t w = 0; w < s.windows; ++w) {
      for (int64_t g = 0; g < s.kv_heads; ++g) {
        const int64_t base = w * T;
        const StridedMap kw(k.data + base * k.cols + g * dh, T, dh,
                            Stride(k.cols));  // [T, d_h]
        const StridedMap vw(v.data + base * v.cols + g * dval, T, dval,
                            Stride(v.cols));  // [T, d_v]
        StridedMapMut dkw(dk->data + base * dk->cols + g * dh, T, dh,
                          Stride(dk->cols));
        StridedMapMut dv_win(dv->data + base * dv->cols + g * dval, T, dval,
                             Stride(dv->cols));
        dkw.setZero();
        dv_win.setZero();
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          for (int64_t b = 0; b < blocks; ++b) {
            const int64_t row0 = b * kQueryBlock;
            const int64_t rows = std::min(kQueryBlock, T - row0);
            const int64_t keys = row0 + rows;  // causal
            const int64_t r0 = base + row0;
            const StridedMap qb(q.data + r0 * q.cols + h * dh, rows, dh,
                                Stride(q.cols));  // [rows, d_h]
            const StridedMap ob(out.data + r0 * out.cols + h * dval, rows, dval,
                                Stride(out.cols));  // [rows, d_v]
            const StridedMap gb(d_out.data + r0 * d_out.cols + h * dval, rows,
                                dval, Stride(d_out.cols));  // [rows, d_v]
            StridedMapMut dqb(dq->data + r0 * dq->cols + h * dh, rows, dh,
                              Stride(dq->cols));  // [rows, d_h]
            const auto kb = kw.topRows(keys);     // [keys, d_h]
            const auto vb = vw.topRows(keys);     // [keys, d_v]
            p.resize(rows, keys);
            p.noalias() = qb * kb.transpose();  // [rows, keys]
            for (int64_t r = 0; r < rows; ++r) {
              const int64_t visible = row0 + r + 1;
              Eigen::Map<Eigen::ArrayXf> row(p.data() + r * keys, keys);
              auto vis = row.head(visible);
              vis *= scale;
              vis = (vis - vis.maxCoeff()).exp();
              vis *= 1.0f / vis.sum();
              row.tail(keys - visible).setZero();
            }
            dv_win.topRows(keys).noalias() +=
                p.transpose() * gb;  // [keys, d_v]
            dp.resize(rows, keys);
            dp.noalias() = gb * vb.transpose();           // [rows, keys]
            d_row = gb.cwiseProduct(ob).rowwise().sum();  // [rows]
            // dS = P ⊙ (dP − D)·scale; P is 0 on masked entries.
            dp.array() =
                p.array() * (dp.array().colwise() - d_row.array()) * scale;
            dqb.noalias() = dp * kb;                             // [rows, d_h]
            dkw.topRows(keys).noalias() += dp.transpose() * qb;  // [keys, d_h]
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace care::compute::cpu
