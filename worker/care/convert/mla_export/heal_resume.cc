#include "care/convert/mla_export/heal_resume.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/record_codec.h"

namespace care::convert::mla {
namespace {

constexpr char kFormat[] = "care-heal-layer v1";

std::string BlobName(int64_t layer) {
  return absl::StrFormat("heal-layer-%05d", layer);
}

// The expected [rows, cols] of each HealParams block (heal_layer.h).
std::pair<int64_t, int64_t> BlockShape(const HealShape& s, int block) {
  const int64_t qd = s.num_heads * s.head_dim;
  switch (block) {
    case 0:
      return {qd, s.hidden};  // q_nope
    case 1:
      return {s.num_heads * s.rope_dim, s.hidden};  // q_pe
    case 2:
      return {s.hidden, s.rank};  // w_down
    case 3:
      return {s.rope_dim, s.hidden};  // w_pe
    default:
      return {s.rank, qd};  // up_k, up_v
  }
}

}  // namespace

std::string SerializeHealedLayer(const std::string& key, const HealedLayer& l) {
  Writer w;
  w.Str(kFormat);
  w.Str(key);
  const MlaHealLayerReport& r = l.report;
  for (double v : {r.heldout_error_before, r.heldout_error_after,
                   r.train_error_before, l.norm_error_mean}) {
    w.F64(v);
  }
  for (int64_t v : {r.steps, r.best_step, int64_t{r.accepted},
                    int64_t{l.alpha_log2}, int64_t{l.params.has_value()}}) {
    w.I64(v);
  }
  if (l.params) {
    for (int i = 0; i < HealParams<float>::kBlocks; ++i) {
      w.MatF(l.params->block(i));
    }
  }
  return w.Take();
}

absl::StatusOr<HealedLayer> ParseHealedLayer(absl::string_view bytes,
                                             const std::string& key,
                                             const HealShape& shape) {
  Reader r(bytes);
  CARE_ASSIGN_OR_RETURN(std::string format, r.Str());
  if (format != kFormat) return absl::DataLossError("not a healed layer");
  CARE_ASSIGN_OR_RETURN(std::string saved_key, r.Str());
  if (saved_key != key) {
    return absl::DataLossError("saved with other healing options");
  }
  HealedLayer l;
  MlaHealLayerReport& rep = l.report;
  for (double* v : {&rep.heldout_error_before, &rep.heldout_error_after,
                    &rep.train_error_before, &l.norm_error_mean}) {
    CARE_ASSIGN_OR_RETURN(*v, r.F64());
  }
  CARE_ASSIGN_OR_RETURN(rep.steps, r.I64());
  CARE_ASSIGN_OR_RETURN(rep.best_step, r.I64());
  CARE_ASSIGN_OR_RETURN(int64_t accepted, r.I64());
  CARE_ASSIGN_OR_RETURN(int64_t alpha, r.I64());
  CARE_ASSIGN_OR_RETURN(int64_t has_params, r.I64());
  rep.accepted = accepted != 0;
  l.alpha_log2 = static_cast<int>(alpha);
  if (rep.accepted != (has_params != 0)) {
    return absl::DataLossError("accepted layer without parameters");
  }
  if (has_params != 0) {
    HealParams<float> p;
    for (int i = 0; i < HealParams<float>::kBlocks; ++i) {
      CARE_ASSIGN_OR_RETURN(p.block(i), r.MatF());
      const auto [rows, cols] = BlockShape(shape, i);
      if (p.block(i).rows() != rows || p.block(i).cols() != cols) {
        return absl::DataLossError(absl::StrCat(
            "parameter block ", i, " is [", p.block(i).rows(), ", ",
            p.block(i).cols(), "], not [", rows, ", ", cols, "]"));
      }
    }
    l.params = std::move(p);
  }
  if (!r.done()) return absl::DataLossError("trailing bytes");
  return l;
}

void SaveHealedLayer(ResumeState& state, int64_t layer, const std::string& key,
                     const HealedLayer& l) {
  absl::Status s =
      state.SaveBlob(BlobName(layer), SerializeHealedLayer(key, l));
  if (!s.ok()) {
    ResumeLog(
        absl::StrCat("cannot save healed layer ", layer, ": ", s.message()));
  }
}

std::optional<HealedLayer> LoadHealedLayer(const ResumeState& state,
                                           int64_t layer,
                                           const std::string& key,
                                           const HealShape& shape) {
  std::optional<std::string> bytes = state.LoadBlob(BlobName(layer));
  if (!bytes) return std::nullopt;
  absl::StatusOr<HealedLayer> parsed = ParseHealedLayer(*bytes, key, shape);
  if (!parsed.ok()) {
    ResumeLog(absl::StrCat("ignoring ", BlobName(layer), ": ",
                           parsed.status().message()));
    return std::nullopt;
  }
  return *std::move(parsed);
}

}  // namespace care::convert::mla
