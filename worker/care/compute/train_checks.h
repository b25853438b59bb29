// Argument checks of the training ops (backend.h: AddColumns,
// CausalAttentionBackward, AdamUpdate, ApplyRotary), shared by the backends
// so that both refuse the same inputs with the same messages.
#ifndef CARE_COMPUTE_TRAIN_CHECKS_H_
#define CARE_COMPUTE_TRAIN_CHECKS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "care/compute/backend.h"

namespace care::compute {

// The checks CopyColumns and AddColumns share: src and dst have the same
// rows and, unless b is empty, each of the b.groups blocks lies inside its
// matrix and `overlap_ok` (the op's rule on strides, named by `rule`)
// holds; else InvalidArgument "<op>: ... do not fit (<rule>)".
absl::Status CheckColumnBlocksFit(const char* op, const Matrix& src,
                                  const ColumnBlocks& b, const Matrix& dst,
                                  bool overlap_ok, const char* rule);

// Rows equal, every block inside its matrix, src blocks disjoint
// (src_stride >= width) and dst_stride either 0 (a sum into one block) or
// >= width.
absl::Status CheckAddColumns(const Matrix& src, const ColumnBlocks& b,
                             const Matrix& dst);

// The shape (as CausalAttention) and every operand's [rows, cols].
absl::Status CheckAttentionBackward(const AttentionShape& s, const Matrix& q,
                                    const Matrix& k, const Matrix& v,
                                    const Matrix& out, const Matrix& d_out,
                                    const Matrix& dq, const Matrix& dk,
                                    const Matrix& dv);

// grad, m1 and m2 of param's shape; finite positive corrections.
absl::Status CheckAdam(const Matrix& grad, const AdamStep& step,
                       const Matrix& param, const Matrix& m1, const Matrix& m2);

// cos/sin [seq_len >= 1, r/2], 2 <= r <= head_dim, head_dim | x.cols.
absl::Status CheckRotary(const char* op, const Matrix& cos, const Matrix& sin,
                         int64_t head_dim, const Matrix& x);

}  // namespace care::compute

#endif  // CARE_COMPUTE_TRAIN_CHECKS_H_
