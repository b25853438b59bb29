#include "care/convert/allocate.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/annotate.h"

namespace care::convert {
namespace {

// Relative guard on floor((1−F)·L·2·g·d_h): decimal fractions such as 0.3
// are not exact in binary and must not lose a whole rank to rounding.
constexpr double kFloorGuard = 1e-9;

// One matrix (K or V of one layer) in a greedy allocation.
struct Slot {
  int64_t layer = 0;
  bool is_v = false;
  Eigen::VectorXd sigma2;  // σ² descending
  Eigen::VectorXd tail;    // tail(r) = Σ_{i>=r} σ²_i (0-based), size n+1
  int64_t floor = 1;
  int64_t ceiling = 1;
  int64_t rank = 0;
  double Next() const { return rank < sigma2.size() ? sigma2(rank) : 0.0; }
  double Tail() const { return rank < tail.size() ? tail(rank) : 0.0; }
  double Total() const { return tail(0); }
};

Slot MakeSlot(int64_t layer, bool is_v, const Eigen::VectorXd& sigma) {
  Slot s;
  s.layer = layer;
  s.is_v = is_v;
  s.sigma2 = sigma.array().square();
  const int64_t n = s.sigma2.size();
  s.tail = Eigen::VectorXd::Zero(n + 1);
  for (int64_t i = n - 1; i >= 0; --i) s.tail(i) = s.tail(i + 1) + s.sigma2(i);
  return s;
}

using ScoreFn = std::function<double(const Slot&)>;

// Starts every slot at its floor and gives +1 to the best-scoring slot below
// its ceiling until `budget` (beyond the floors) is spent. Ties go to the
// lower slot index, so the result is deterministic.
void Greedy(std::vector<Slot>& slots, int64_t budget, const ScoreFn& score) {
  using Entry = std::pair<double, int64_t>;  // (score, -index)
  std::priority_queue<Entry> heap;
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i].rank = slots[i].floor;
    budget -= slots[i].floor;
    if (slots[i].rank < slots[i].ceiling) {
      heap.emplace(score(slots[i]), -static_cast<int64_t>(i));
    }
  }
  while (budget > 0 && !heap.empty()) {
    const int64_t i = -heap.top().second;
    heap.pop();
    Slot& s = slots[i];
    ++s.rank;
    --budget;
    if (s.rank < s.ceiling) heap.emplace(score(s), -i);
  }
}

absl::Status CheckSpectra(const LayerSpectra& spectra,
                          const ModelShape& shape) {
  if (static_cast<int64_t>(spectra.k.size()) != shape.layers ||
      static_cast<int64_t>(spectra.v.size()) != shape.layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("allocation: spectra for ", spectra.k.size(), " K and ",
                     spectra.v.size(), " V layers, expected ", shape.layers));
  }
  for (int64_t l = 0; l < shape.layers; ++l) {
    for (const Eigen::VectorXd* s : {&spectra.k[l], &spectra.v[l]}) {
      if (!s->allFinite() || (s->size() > 0 && s->minCoeff() < 0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("allocation: layer ", l,
                         " has a non-finite or negative singular "
                         "value"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTotal(int64_t total, const ModelShape& shape) {
  const int64_t lo = 2 * shape.layers;
  const int64_t hi = 2 * shape.layers * shape.max_rank;
  if (total < lo || total > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("allocation: total latent width ", total, " outside [", lo,
                     ", ", hi, "] (rank 1 .. ", shape.max_rank, " per matrix, ",
                     shape.layers, " layers)"));
  }
  return absl::OkStatus();
}

Allocation FromSlots(std::string name, const std::vector<Slot>& slots,
                     int64_t layers) {
  Allocation a;
  a.name = std::move(name);
  a.rank_k.assign(layers, 0);
  a.rank_v.assign(layers, 0);
  for (const Slot& s : slots) (s.is_v ? a.rank_v : a.rank_k)[s.layer] = s.rank;
  return a;
}

}  // namespace

std::string Budget::ToString() const {
  if (kind == Kind::kRank) return absl::StrCat("rank=", rank);
  return absl::StrFormat("kv_save=%g", kv_save);
}

absl::StatusOr<int64_t> TotalLatentWidth(const Budget& budget,
                                         const ModelShape& shape) {
  if (shape.layers < 1 || shape.kv_width < 1 || shape.max_rank < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "budget: model has ", shape.layers, " layers and K/V width ",
        shape.kv_width, "; both must be >= 1"));
  }
  const int64_t gqa = shape.layers * 2 * shape.kv_width;
  const int64_t cap = shape.layers * 2 * shape.max_rank;
  if (budget.kind == Budget::Kind::kRank) {
    if (budget.rank < 1 || budget.rank > shape.max_rank) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", budget.rank, " out of range: allowed 1 .. ",
                       shape.max_rank, " (g·d_h = ", shape.kv_width, ")"));
    }
    return 2 * budget.rank * shape.layers;
  }
  // Largest F that still leaves rank 1 per matrix: (1−F)·gqa >= 2L.
  const double max_save = 1.0 - 1.0 / static_cast<double>(shape.kv_width);
  const double f = budget.kv_save;
  if (!std::isfinite(f) || f < 0 || f >= 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kv_save %g out of range: allowed 0 <= F <= %.6g (fraction of the "
        "GQA cache saved)",
        f, max_save));
  }
  const double exact = (1.0 - f) * static_cast<double>(gqa);
  const int64_t total =
      static_cast<int64_t>(std::floor(exact * (1 + kFloorGuard)));
  if (total < 2 * shape.layers) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kv_save %g leaves %d latent dims for %d layers (need rank >= 1 for "
        "K and V of every layer): allowed 0 <= F <= %.6g",
        f, total, shape.layers, max_save));
  }
  return std::min(total, cap);
}

int64_t Allocation::Total() const {
  int64_t t = 0;
  for (int64_t r : rank_k) t += r;
  for (int64_t r : rank_v) t += r;
  return t;
}

// The strategy's words, both ways (the API's are the same, api/names.h).
constexpr std::pair<AllocationStrategy, absl::string_view> kStrategyWords[] = {
    {AllocationStrategy::kUniform, "uniform"},
    {AllocationStrategy::kAdjusted, "adjusted"},
    {AllocationStrategy::kAuto, "auto"}};

absl::StatusOr<AllocationStrategy> ParseAllocationStrategy(
    absl::string_view name) {
  for (const auto& [strategy, word] : kStrategyWords) {
    if (name == word) return strategy;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown allocation \"", name, "\"; expected uniform, adjusted or auto"));
}

std::string AllocationStrategyName(AllocationStrategy strategy) {
  for (const auto& [s, word] : kStrategyWords) {
    if (s == strategy) return std::string(word);
  }
  return "unknown";
}

absl::StatusOr<Allocation> AllocateUniform(int64_t total,
                                           const ModelShape& shape) {
  if (absl::Status s = CheckTotal(total, shape); !s.ok()) return s;
  const int64_t r = total / (2 * shape.layers);
  Allocation a;
  a.name = "uniform";
  a.rank_k.assign(shape.layers, r);
  a.rank_v.assign(shape.layers, r);
  return a;
}

absl::StatusOr<Allocation> AllocateAdjusted(const LayerSpectra& spectra,
                                            int64_t total,
                                            const ModelShape& shape,
                                            const AdjustedOptions& options) {
  if (absl::Status s = CheckTotal(total, shape); !s.ok()) return s;
  if (absl::Status s = CheckSpectra(spectra, shape); !s.ok()) return s;
  const int64_t L = shape.layers;
  std::vector<Slot> all;
  for (const bool is_v : {false, true}) {
    const int64_t budget = is_v ? total / 2 : total - total / 2;
    const int64_t floor = std::max<int64_t>(1, (budget / L) / 2);
    const int64_t ceiling =
        std::min(shape.max_rank, 2 * ((budget + L - 1) / L));
    std::vector<Slot> slots;
    for (int64_t l = 0; l < L; ++l) {
      slots.push_back(MakeSlot(l, is_v, is_v ? spectra.v[l] : spectra.k[l]));
      slots.back().floor = floor;
      slots.back().ceiling = ceiling;
    }
    const ScoreFn score = [&](const Slot& s) {
      const double tail = s.Tail();
      double v = tail > 0 ? s.Next() / tail : 0.0;
      if (options.depth_factor) {
        v *= std::sqrt(static_cast<double>(L - s.layer) / ((L + 1) / 2.0));
      }
      if (options.rank_cost_factor) {
        v /= std::sqrt(static_cast<double>(s.rank) / s.floor);
      }
      return v;
    };
    Greedy(slots, budget, score);
    all.insert(all.end(), slots.begin(), slots.end());
  }
  const bool code = options.depth_factor || options.rank_cost_factor;
  return FromSlots(code ? "adjusted-code" : "adjusted", all, L);
}

absl::StatusOr<Allocation> AllocatePooled(const LayerSpectra& spectra,
                                          int64_t total,
                                          const ModelShape& shape,
                                          bool relative, int64_t floor) {
  if (absl::Status s = CheckTotal(total, shape); !s.ok()) return s;
  if (absl::Status s = CheckSpectra(spectra, shape); !s.ok()) return s;
  // Never more than the budget can pay for in every matrix.
  floor = std::clamp<int64_t>(
      floor, 1, std::min(shape.max_rank, total / (2 * shape.layers)));
  std::vector<Slot> slots;
  for (int64_t l = 0; l < shape.layers; ++l) {
    for (const bool is_v : {false, true}) {
      slots.push_back(MakeSlot(l, is_v, is_v ? spectra.v[l] : spectra.k[l]));
      slots.back().floor = floor;
      slots.back().ceiling = shape.max_rank;
    }
  }
  const ScoreFn score = [relative](const Slot& s) {
    const double denom = relative ? s.Total() : s.Tail();
    return denom > 0 ? s.Next() / denom : 0.0;
  };
  Greedy(slots, total, score);
  std::string name = relative ? "pooled-relative" : "pooled-tail";
  if (floor > 1) name += "-floor";
  return FromSlots(std::move(name), slots, shape.layers);
}

absl::StatusOr<std::vector<Allocation>> CandidateAllocations(
    const LayerSpectra& spectra, int64_t total, const ModelShape& shape) {
  std::vector<Allocation> out;
  auto add = [&out](absl::StatusOr<Allocation> a) -> absl::Status {
    if (!a.ok()) return a.status();
    out.push_back(*std::move(a));
    return absl::OkStatus();
  };
  absl::Status s = add(AllocateUniform(total, shape));
  if (s.ok()) s = add(AllocateAdjusted(spectra, total, shape, {}));
  if (s.ok()) {
    s = add(AllocateAdjusted(spectra, total, shape,
                             {.depth_factor = true, .rank_cost_factor = true}));
  }
  if (s.ok()) s = add(AllocatePooled(spectra, total, shape, true));
  if (s.ok()) s = add(AllocatePooled(spectra, total, shape, false));
  const int64_t half_uniform = total / (2 * shape.layers) / 2;
  if (s.ok() && half_uniform > 1) {
    s = add(AllocatePooled(spectra, total, shape, true, half_uniform));
  }
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<AutoChoice> ChooseAllocation(std::vector<Allocation> candidates,
                                            const AllocationScorer& scorer) {
  if (candidates.empty()) {
    return absl::InvalidArgumentError("auto allocation: no candidates");
  }
  AutoChoice choice;
  choice.best = -1;
  for (Allocation& a : candidates) {
    absl::StatusOr<double> score = scorer(a);
    if (!score.ok()) {
      return Annotate(
          score.status(),
          absl::StrCat("auto allocation: scoring candidate \"", a.name, "\""));
    }
    const int64_t index = static_cast<int64_t>(choice.candidates.size());
    if (std::isfinite(*score) &&
        (choice.best < 0 || *score < choice.candidates[choice.best].score)) {
      choice.best = index;
    }
    choice.candidates.push_back({std::move(a), *score});
  }
  if (choice.best < 0) {
    return absl::InternalError(
        "auto allocation: every candidate scored a non-finite NLL");
  }
  return choice;
}

}  // namespace care::convert
