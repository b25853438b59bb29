#include "care/compute/train_checks.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::compute {

absl::Status CheckColumnBlocksFit(const char* op, const Matrix& src,
                                  const ColumnBlocks& b, const Matrix& dst,
                                  bool overlap_ok, const char* rule) {
  if (src.rows != dst.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": src has ", src.rows, " rows, dst ", dst.rows));
  }
  auto fits = [&b](int64_t col0, int64_t stride, int64_t cols) {
    return col0 >= 0 && stride >= 0 &&
           col0 + (b.groups - 1) * stride + b.width <= cols;
  };
  if (b.groups < 0 || b.width < 0 ||
      (b.groups > 0 && b.width > 0 &&
       (!fits(b.src_col0, b.src_stride, src.cols) ||
        !fits(b.dst_col0, b.dst_stride, dst.cols) || !overlap_ok))) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", b.groups, " blocks of width ", b.width, " from column ",
        b.src_col0, " (stride ", b.src_stride, ") of ", src.cols, " to column ",
        b.dst_col0, " (stride ", b.dst_stride, ") of ", dst.cols,
        " do not fit (", rule, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckAddColumns(const Matrix& src, const ColumnBlocks& b,
                             const Matrix& dst) {
  const bool disjoint =
      b.groups <= 1 || (b.src_stride >= b.width &&
                        (b.dst_stride == 0 || b.dst_stride >= b.width));
  return CheckColumnBlocksFit(
      "AddColumns", src, b, dst, disjoint,
      "source blocks may not overlap; destination blocks neither, unless the "
      "stride is 0");
}

absl::Status CheckAttentionBackward(const AttentionShape& s, const Matrix& q,
                                    const Matrix& k, const Matrix& v,
                                    const Matrix& out, const Matrix& d_out,
                                    const Matrix& dq, const Matrix& dk,
                                    const Matrix& dv) {
  constexpr char kOp[] = "CausalAttentionBackward";
  if (s.windows < 1 || s.seq_len < 1 || s.heads < 1 || s.kv_heads < 1 ||
      s.head_dim < 1 || s.v_head_dim < 0 || s.heads % s.kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": bad shape windows ", s.windows, ", seq_len ",
                     s.seq_len, ", heads ", s.heads, ", kv_heads ", s.kv_heads,
                     ", head_dim ", s.head_dim, ", v_head_dim ", s.v_head_dim,
                     " (kv_heads must divide heads)"));
  }
  const int64_t n = s.windows * s.seq_len, dh = s.head_dim, dv_ = s.value_dim();
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "q", q, n, s.heads * dh));
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "k", k, n, s.kv_heads * dh));
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "v", v, n, s.kv_heads * dv_));
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "out", out, n, s.heads * dv_));
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "d_out", d_out, n, s.heads * dv_));
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "dq", dq, n, s.heads * dh));
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "dk", dk, n, s.kv_heads * dh));
  return CheckShape(kOp, "dv", dv, n, s.kv_heads * dv_);
}

absl::Status CheckAdam(const Matrix& grad, const AdamStep& step,
                       const Matrix& param, const Matrix& m1,
                       const Matrix& m2) {
  constexpr char kOp[] = "AdamUpdate";
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "grad", grad, param.rows, param.cols));
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "m1", m1, param.rows, param.cols));
  CARE_RETURN_IF_ERROR(CheckShape(kOp, "m2", m2, param.rows, param.cols));
  if (!(step.correction1 > 0) || !(step.correction2 > 0) ||
      !std::isfinite(step.lr) || !std::isfinite(step.grad_scale) ||
      !(step.eps >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": lr ", step.lr, ", grad_scale ", step.grad_scale,
        " must be finite, corrections ", step.correction1, " / ",
        step.correction2, " positive and eps ", step.eps, " >= 0"));
  }
  return absl::OkStatus();
}

absl::Status CheckRotary(const char* op, const Matrix& cos, const Matrix& sin,
                         int64_t head_dim, const Matrix& x) {
  CARE_RETURN_IF_ERROR(CheckShape(op, "sin", sin, cos.rows, cos.cols));
  const int64_t half = cos.cols;
  if (cos.rows < 1 || half < 1 || head_dim < 1 || 2 * half > head_dim ||
      x.cols % head_dim != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": head_dim ", head_dim, " must divide ", x.cols,
                     " columns and hold the rotary width ", 2 * half,
                     " (seq_len ", cos.rows, ")"));
  }
  return absl::OkStatus();
}

}  // namespace care::compute
