// Rank allocation under a KV budget (method.md §3, docs/conversion.md).
//
// The budget is the total latent width Σ_l (r_K(l) + r_V(l)) per token; KV
// parity means it never exceeds the GQA cache L·2·g·d_h. Allocators only see
// each matrix's whitened singular values, so they are pure, deterministic
// functions that tests can drive with synthetic spectra.
#ifndef CARE_CONVERT_ALLOCATE_H_
#define CARE_CONVERT_ALLOCATE_H_

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::convert {

struct Budget {
  enum class Kind { kKvSave, kRank };
  Kind kind = Kind::kKvSave;
  double kv_save = 0;  // fraction of the GQA cache saved, 0 <= F < 1
  int64_t rank = 0;    // average rank per matrix (K and V), per layer

  static Budget KvSave(double fraction) { return {Kind::kKvSave, fraction, 0}; }
  static Budget Rank(int64_t r) { return {Kind::kRank, 0, r}; }
  std::string ToString() const;  // "kv_save=0.75" or "rank=8"
};

struct ModelShape {
  int64_t layers = 0;    // L
  int64_t kv_width = 0;  // g·d_h, width of K and of V
  int64_t max_rank = 0;  // min(D, g·d_h): rank ceiling of any matrix
};

// Total latent width the budget allows: floor((1−F)·L·2·g·d_h) or 2·R·L.
// InvalidArgument naming the allowed range when the budget is not finite,
// outside [0, 1), or leaves less than rank 1 per matrix.
absl::StatusOr<int64_t> TotalLatentWidth(const Budget& budget,
                                         const ModelShape& shape);

struct Allocation {
  std::string name;             // "uniform", "adjusted", "pooled-relative", …
  std::vector<int64_t> rank_k;  // [L]
  std::vector<int64_t> rank_v;  // [L]
  int64_t Total() const;        // Σ (r_K + r_V)
};

// Whitened singular values per layer, descending (Decomposition::
// singular_values), for K and for V.
struct LayerSpectra {
  std::vector<Eigen::VectorXd> k;  // [L] of [max_rank]
  std::vector<Eigen::VectorXd> v;  // [L] of [max_rank]
};

enum class AllocationStrategy { kUniform, kAdjusted, kAuto };
absl::StatusOr<AllocationStrategy> ParseAllocationStrategy(
    absl::string_view name);
std::string AllocationStrategyName(AllocationStrategy strategy);

// Paper CARE-U: r_K = r_V = floor(total / 2L) in every layer (the remainder,
// < 2L, stays unused so that every layer is identical).
absl::StatusOr<Allocation> AllocateUniform(int64_t total,
                                           const ModelShape& shape);

struct AdjustedOptions {
  // Released-code factors (not in the paper): score ×
  // sqrt((L−l)/((L+1)/2)) for layer l (0-based) and × 1/sqrt(r/r_floor).
  bool depth_factor = false;
  bool rank_cost_factor = false;
};

// Paper CARE-E: separate greedy heaps for K (budget ceil(total/2)) and V
// (floor(total/2)); each layer starts at floor = max(1, ⌊B/L⌋/2), ceiling
// min(max_rank, 2·⌈B/L⌉); +1 rank to the highest σ²_{r+1} / Σ_{m>r} σ²_m.
absl::StatusOr<Allocation> AllocateAdjusted(const LayerSpectra& spectra,
                                            int64_t total,
                                            const ModelShape& shape,
                                            const AdjustedOptions& options);

// Beyond the paper: K and V of all layers in one heap over `total`, floor 1,
// ceiling max_rank. `relative` scores σ²_{r+1} / Σ σ² (share of that
// matrix's energy gained); otherwise the paper score σ²_{r+1} / tail.
// With fixed bounds the result is a prefix of one greedy sequence, so every
// rank is monotone in the budget.
// `floor` > 1 starts every matrix there (clamped to ceiling and budget):
// "pooled-relative-floor" uses half the uniform rank, hedging between
// uniform and a free pool.
absl::StatusOr<Allocation> AllocatePooled(const LayerSpectra& spectra,
                                          int64_t total,
                                          const ModelShape& shape,
                                          bool relative, int64_t floor = 1);

// The candidates `auto` compares, in a fixed order: uniform, adjusted,
// adjusted-code (both factors), pooled-relative, pooled-tail,
// pooled-relative-floor (floor = half the uniform rank).
absl::StatusOr<std::vector<Allocation>> CandidateAllocations(
    const LayerSpectra& spectra, int64_t total, const ModelShape& shape);

// Lower is better (a mean NLL on held-out calibration tokens).
using AllocationScorer =
    std::function<absl::StatusOr<double>(const Allocation&)>;

struct ScoredAllocation {
  Allocation allocation;
  double score = 0;
};

struct AutoChoice {
  std::vector<ScoredAllocation> candidates;  // every candidate, in order
  int64_t best = 0;  // index of the lowest score (first on ties)
};

// Scores every candidate and picks the best. A scorer error aborts (it names
// the candidate); a non-finite score never wins.
absl::StatusOr<AutoChoice> ChooseAllocation(std::vector<Allocation> candidates,
                                            const AllocationScorer& scorer);

}  // namespace care::convert

#endif  // CARE_CONVERT_ALLOCATE_H_
