// Partial RoPE for the DeepSeek-V3 export (docs/conversion.md "DeepSeek-V3
// layout"): RoRoPE with FreqFold. A GQA key has, per RoPE frequency f, one
// 2-D pair per KV head; rotating those g pairs among themselves by any
// orthogonal U_f (the same for both components) commutes with the rotation
// by position, so query·key scores are unchanged when the query side gets
// the same U_f. Choosing U_f from the calibration keys' second moment puts
// most of the key energy of frequency f into one rotated pair: that pair
// keeps RoPE and becomes a dimension pair of the shared `k_pe`; what is left
// of the key becomes position-free ("NoPE") and joins the latent.
//
// FreqFold K treats K adjacent frequencies as one: the rotation acts on the
// g·K pairs of the group and its top K rotated pairs keep RoPE, each at one
// of the group's frequencies (an approximation for K > 1, exact for K = 1).
// rope_dim R < d_h keeps the R/2 highest source frequencies only (the
// written rope_theta is then theta^(R/d_h), so that output pair i rotates at
// source frequency i); lower frequencies become NoPE entirely.
//
// Source keys use the HF half-split layout (pair f of head j is dims
// j·d_h + f and j·d_h + f + d_h/2); the written k_pe/q_pe rows are
// interleaved (pair i = rows 2i, 2i+1), DeepSeek-V3's rope_interleave: true.
#ifndef CARE_CONVERT_MLA_EXPORT_ROPE_SPLIT_H_
#define CARE_CONVERT_MLA_EXPORT_ROPE_SPLIT_H_

#include <Eigen/Core>
#include <cstdint>

#include "absl/status/statusor.h"

namespace care::convert::mla {

struct RopeSplitShape {
  int64_t num_kv_heads = 0;  // g
  int64_t head_dim = 0;      // d_h (all of it rotated in the source)
  int64_t rope_dim = 0;      // R: even, 2 <= R <= d_h
  int64_t freqfold = 1;      // K: divides R / 2
};

// InvalidArgument naming the violated rule (rope_dim, freqfold).
absl::Status CheckRopeSplitShape(const RopeSplitShape& shape);

struct RopeSplit {
  RopeSplitShape shape;
  // [R, g·d_h], orthonormal rows: k_pe = pe·k for a source key k [g·d_h]
  // (before RoPE); row 2i / 2i+1 is the first / second component of output
  // pair i, which rotates at source frequency i.
  Eigen::MatrixXd pe;
  // Share of the calibration key energy tr(G) that the k_pe rows carry
  // (tr(pe·G·peᵀ) / tr(G); 1 when tr(G) = 0).
  double rope_energy = 1;

  // Π = peᵀ·pe [g·d_h, g·d_h]: the projector onto the kept (RoPE) part; the
  // NoPE key is (I − Π)·k.
  Eigen::MatrixXd Projector() const { return pe.transpose() * pe; }
  // The columns of pe for KV head j, [R, d_h]: q_pe = PeBlock(j)·q for a
  // query head q [d_h] of group j.
  Eigen::MatrixXd PeBlock(int64_t j) const {
    return pe.middleCols(j * shape.head_dim, shape.head_dim);
  }
};

// key_gram = W_Kᵀ·C·W_K [g·d_h, g·d_h], the calibration keys' second moment
// (pre-RoPE). InvalidArgument on a bad shape or a non-finite Gram.
absl::StatusOr<RopeSplit> SplitRope(const Eigen::MatrixXd& key_gram,
                                    const RopeSplitShape& shape);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_ROPE_SPLIT_H_
