// The allocate stage: candidate rank allocations under the budget (one, or
// several for `auto`, each scored by the held-out NLL of the model it
// gives), then every layer truncated to the chosen ranks.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "care/convert/flop_model.h"
#include "care/convert/spectrum_sample.h"
#include "care/convert/stages/stages.h"
#include "care/io/sha256.h"

namespace care::convert::stage {
namespace {

// The cache key of one allocation's held-out score: its ranks.
std::string CandidateKey(const Allocation& a) {
  return "candidate-" +
         io::Sha256Hex(absl::StrCat(absl::StrJoin(a.rank_k, ","), ";",
                                    absl::StrJoin(a.rank_v, ",")))
             .substr(0, 16);
}

absl::StatusOr<std::vector<Allocation>> Candidates(
    const ConvertOptions& options, const Inputs& in,
    const std::vector<LayerDecomposition>& decomp) {
  LayerSpectra spectra;
  for (const LayerDecomposition& d : decomp) {
    spectra.k.push_back(d.k.singular_values);
    spectra.v.push_back(d.v.singular_values);
  }
  std::vector<Allocation> candidates;
  switch (options.allocation) {
    case AllocationStrategy::kUniform: {
      CARE_ASSIGN_OR_RETURN(Allocation a,
                            AllocateUniform(in.budget_width, in.shape));
      candidates.push_back(std::move(a));
      break;
    }
    case AllocationStrategy::kAdjusted: {
      CARE_ASSIGN_OR_RETURN(Allocation a,
                            AllocateAdjusted(spectra, in.budget_width, in.shape,
                                             options.adjusted));
      candidates.push_back(std::move(a));
      break;
    }
    case AllocationStrategy::kAuto: {
      CARE_ASSIGN_OR_RETURN(
          candidates, CandidateAllocations(spectra, in.budget_width, in.shape));
      break;
    }
  }
  return candidates;
}

// Every layer truncated to `a`'s ranks.
absl::StatusOr<std::vector<LatentLayer>> Truncate(
    const Inputs& in, const std::vector<LayerDecomposition>& decomp,
    const Allocation& a) {
  std::vector<LatentLayer> layers;
  for (int64_t l = 0; l < in.num_layers(); ++l) {
    // Re-read from the checkpoint: the pass dropped them (docs/scale.md).
    CARE_ASSIGN_OR_RETURN(LayerWeights w,
                          LoadLayerWeights(in.config(), in.weights(), l));
    CARE_ASSIGN_OR_RETURN(
        LatentLayer x, TruncateLayer(decomp[l], w, a.rank_k[l], a.rank_v[l]));
    layers.push_back(std::move(x));
  }
  return layers;
}

// The fit at the chosen allocation: every layer truncated to its ranks.
absl::StatusOr<Fit> Choose(const Inputs& in, DecomposedModel decomposed,
                           Allocation chosen,
                           std::vector<CandidateReport> candidates,
                           StageProgress& progress, StageTimer& timer,
                           ConversionReport* report) {
  Fit fit;
  for (const LayerDecomposition& d : decomposed.layers) {
    fit.spectra_k.push_back(
        SampleSpectrum(d.k.singular_values.data(), d.k.singular_values.size()));
    fit.spectra_v.push_back(
        SampleSpectrum(d.v.singular_values.data(), d.v.singular_values.size()));
  }
  fit.allocation = std::move(chosen);
  report->allocation_chosen = fit.allocation.name;
  report->candidates = std::move(candidates);
  CARE_ASSIGN_OR_RETURN(fit.layers,
                        Truncate(in, decomposed.layers, fit.allocation));
  report->kv_width_after = fit.allocation.Total();
  fit.decompositions = std::move(decomposed.layers);
  fit.grams = std::move(decomposed.grams);
  timer.Done("allocate", report, progress.Flops("allocate"));
  return fit;
}

}  // namespace

absl::StatusOr<Fit> Allocate(const ConvertOptions& options, const Inputs& in,
                             DecomposedModel decomposed,
                             StageProgress& progress,
                             ConversionReport* report) {
  StageTimer timer;
  const ModelConfig& config = in.config();
  const int64_t L = in.num_layers();
  const std::vector<LayerDecomposition>& decomp = decomposed.layers;
  CARE_ASSIGN_OR_RETURN(std::vector<Allocation> candidates,
                        Candidates(options, in, decomp));
  const int64_t n_cand = static_cast<int64_t>(candidates.size());
  int64_t scored = 0;
  progress.Begin("allocate");
  if (!report->heldout_run) {
    // One candidate (uniform or adjusted) and nothing to score it on.
    if (n_cand != 1) {
      return absl::InternalError(
          absl::StrCat("allocation ", report->allocation, " gave ", n_cand,
                       " candidates but the held-out windows were not run"));
    }
    return Choose(in, std::move(decomposed), std::move(candidates[0]),
                  {{candidates[0].name, 0, true, candidates[0].rank_k,
                    candidates[0].rank_v}},
                  progress, timer, report);
  }
  CARE_ASSIGN_OR_RETURN(
      AutoChoice choice,
      ChooseAllocation(
          candidates, [&](const Allocation& a) -> absl::StatusOr<double> {
            // A score saved by an earlier attempt (same fingerprint, ranks).
            const std::string key = CandidateKey(a);
            if (in.resume) {
              if (auto saved = in.resume->LoadValues(key, 1)) {
                ++scored;
                return (*saved)[0];
              }
            }
            CARE_ASSIGN_OR_RETURN(auto layers, Truncate(in, decomp, a));
            CARE_ASSIGN_OR_RETURN(
                engine::NllSum nll,
                WindowNll(
                    config, in.weights(), in.windows.heldout,
                    in.windows.heldout_targets,
                    [&](int64_t l) { return layers[l].MakeProjector(); },
                    in.engine,
                    progress.Layers(
                        "allocate", L, scored, n_cand,
                        ForwardLayerFlops(config, in.windows.heldout.tokens(),
                                          report->calib_seq_len))));
            progress.AddFlops("allocate", static_cast<double>(nll.count) *
                                              HeadFlopsPerToken(config));
            ++scored;
            SaveValuesOrLog(in.resume.get(), key, {nll.mean()});
            return nll.mean();
          }));
  report->heldout_nll_converted = choice.candidates[choice.best].score;
  std::vector<CandidateReport> scored_candidates;
  for (int64_t i = 0; i < n_cand; ++i) {
    const ScoredAllocation& c = choice.candidates[i];
    scored_candidates.push_back({c.allocation.name, c.score, i == choice.best,
                                 c.allocation.rank_k, c.allocation.rank_v});
  }
  return Choose(in, std::move(decomposed),
                choice.candidates[choice.best].allocation,
                std::move(scored_candidates), progress, timer, report);
}

}  // namespace care::convert::stage
