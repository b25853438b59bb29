// Layer-wise healing of the DeepSeek-V3 export (docs/conversion.md
// "Healing"): after the one-shot factorization, one layer's new attention
// parameters are optimised so that its attention output, after o_proj,
// matches the original GQA layer's on calibration activations.
//
// Parameters (the written tensors in the unscaled linear latent: the
// kv_a_layernorm α-trick and kv_b_proj's sqrt(eps) are applied at write
// time, heal_tensors.h), per token x [D] and query head h:
//   q_nope_h = Qn_h·x  [d_h]    Qn = q_nope   [n_h·d_h, D]
//   q_pe_h   = Qp_h·x  [R]      Qp = q_pe     [n_h·R, D] (interleaved pairs)
//   c        = x·Wd    [r]      Wd = w_down   [D, r]
//   k_pe     = Wp·x    [R]      Wp = w_pe     [R, D], shared by all heads
//   k_nope_h = c·Uk_h  [d_h]    Uk = up_k     [r, n_h·d_h]
//   v_h      = c·Uv_h  [d_h]    Uv = up_v     [r, n_h·d_h]
// Scores (q_nope·k_nope + rope(q_pe)·rope(k_pe))·scale with causal softmax
// per window; the head outputs [n_h·d_h] go through the (fixed) o_proj.
// kv_b_proj has a row block per query head, so healing may untie the
// heads of a GQA group at no cache cost (the cache is c and k_pe).
//
// Loss: Σ_tokens ‖ŷ − y‖² after o_proj, y the original layer's output. After
// o_proj rather than before: o_proj is what the residual stream sees, so
// head directions it shrinks matter less and errors it amplifies more.
#ifndef CARE_CONVERT_MLA_EXPORT_HEAL_LAYER_H_
#define CARE_CONVERT_MLA_EXPORT_HEAL_LAYER_H_

#include <Eigen/Core>
#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"

namespace care::convert::mla {

template <typename S>
using HealMatrix =
    Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct HealShape {
  int64_t num_heads = 0;  // n_h
  int64_t head_dim = 0;   // d_h of q_nope, k_nope and v
  int64_t rope_dim = 0;   // R
  int64_t rank = 0;       // r, kv_lora_rank
  int64_t hidden = 0;     // D
};

template <typename S>
struct HealParams {
  static constexpr int kBlocks = 6;
  HealMatrix<S> q_nope;  // [n_h·d_h, D]
  HealMatrix<S> q_pe;    // [n_h·R, D]
  HealMatrix<S> w_down;  // [D, r]
  HealMatrix<S> w_pe;    // [R, D]
  HealMatrix<S> up_k;    // [r, n_h·d_h]
  HealMatrix<S> up_v;    // [r, n_h·d_h]

  HealMatrix<S>& block(int i);
  const HealMatrix<S>& block(int i) const;
  // Zeros of the same shapes.
  HealParams ZerosLike() const;
};

// The fixed parts of the layer: shapes, RoPE tables of the export (pairs
// (2i, 2i+1) of q_pe/k_pe rotate by position·θ_i), softmax scale, o_proj.
template <typename S>
struct HealAttention {
  HealShape shape;
  int64_t seq_len = 0;   // T, tokens per window (positions 0..T-1)
  HealMatrix<S> cos;     // [T, R/2]
  HealMatrix<S> sin;     // [T, R/2]
  S scale = 1;           // softmax scale (d_h + R)^-1/2
  HealMatrix<S> o_proj;  // [D, n_h·d_h] o_proj.weight
};

// InvalidArgument unless every matrix matches the shape.
template <typename S>
absl::Status CheckHealShapes(const HealAttention<S>& a, const HealParams<S>& p);

// ŷ [W·T, D]: the layer's attention output after o_proj for x [W·T, D].
template <typename S>
absl::StatusOr<HealMatrix<S>> HealOutput(
    const HealAttention<S>& a, const HealParams<S>& p,
    const Eigen::Ref<const HealMatrix<S>>& x);

// [W·T, n_h·d_h]: the head outputs before o_proj for x [W·T, D].
template <typename S>
absl::StatusOr<HealMatrix<S>> HealHeadOutputs(
    const HealAttention<S>& a, const HealParams<S>& p,
    const Eigen::Ref<const HealMatrix<S>>& x);

// Σ ‖ŷ − y‖² over the tokens of x [W·T, D] (whole windows) against y
// [W·T, D]; with grad non-null also its gradient in every parameter.
template <typename S>
absl::StatusOr<double> HealLoss(const HealAttention<S>& a,
                                const HealParams<S>& p,
                                const Eigen::Ref<const HealMatrix<S>>& x,
                                const Eigen::Ref<const HealMatrix<S>>& y,
                                HealParams<S>* grad);

struct HealOptions {
  int64_t max_steps = 400;       // Adam steps (mini-batches)
  int64_t batch_windows = 8;     // windows per step
  double learning_rate = 0.016;  // relative to each block's initial RMS
  int64_t eval_every = 20;       // held-out evaluation period (steps)
  int64_t patience = 3;          // evaluations without improvement to stop
  uint64_t seed = 0;
  // Called after every step (progress, cancellation); an error stops.
  std::function<absl::Status(int64_t step)> on_step;
};

struct HealResult {
  // ‖ŷ − y‖²/‖y‖² on the held-out tokens: the starting point and the
  // parameters kept (never above `before`).
  double heldout_before = 0, heldout_after = 0;
  double train_before = 0;  // same on the first mini-batch
  int64_t steps = 0;        // steps run
  int64_t best_step = 0;    // step of the kept parameters (0: the start)
};

// Adam (cosine-decayed step, per-block step relative to the block's RMS)
// on mini-batches of the training windows; every eval_every steps the
// held-out error is measured and the best parameters kept; stops after
// `patience` evaluations without improvement (heal_schedule.h, the schedule
// HealLayerOnBackend runs too). `p` is the start and gets the kept
// parameters.
template <typename S>
absl::StatusOr<HealResult> HealLayer(
    const HealAttention<S>& a, HealParams<S>& p,
    const Eigen::Ref<const HealMatrix<S>>& x_train,
    const Eigen::Ref<const HealMatrix<S>>& y_train,
    const Eigen::Ref<const HealMatrix<S>>& x_heldout,
    const Eigen::Ref<const HealMatrix<S>>& y_heldout,
    const HealOptions& options);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_HEAL_LAYER_H_
