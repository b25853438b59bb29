#include "care/convert/mla_export/mla_resume.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/record_codec.h"

namespace care::convert::mla {
namespace {

constexpr char kFormat[] = "care-mla-layer v2";
constexpr char kPassDone[] = "mla-calibrated";

void WriteLayer(Writer& w, const MlaLayer& m) {
  const RopeSplitShape& s = m.rope.shape;
  for (int64_t v : {s.num_kv_heads, s.head_dim, s.rope_dim, s.freqfold}) {
    w.I64(v);
  }
  w.MatD(m.rope.pe);
  w.F64(m.rope.rope_energy);
  w.MatF(m.w_down);
  w.MatF(m.up_k);
  w.MatF(m.up_v);
  w.F64(m.q_scale);
  w.I64(m.alpha_log2);
  w.I64(m.q_alpha_log2);
  w.I64(m.bias_channel ? 1 : 0);
  for (double v : {m.norm_error_mean, m.norm_error_max, m.retained_energy,
                   m.calib_error_k, m.calib_error_v, m.balance_k, m.balance_v,
                   m.nope_dropped_error, m.nope_corrected_error,
                   m.scaling.damping_added, m.scaling.jitter_added}) {
    w.F64(v);
  }
  w.I64(m.scaling.clamped_eigenvalues);
  w.I64(m.scaling.zero_channels);
  w.I64(m.scaling.identity_fallback ? 1 : 0);
  w.Str(m.scaling.note);
  w.VecF(m.q_fold);
  w.VecF(m.k_fold);
  w.MatF(m.q_regression);
  w.MatF(m.k_regression);
  w.I64(static_cast<int64_t>(m.nope_correction.size()));
  for (const Eigen::Matrix2d& c : m.nope_correction) w.Raw(c.data(), 32);
  w.MatF(m.o_proj);
}

absl::StatusOr<MlaLayer> ReadLayer(Reader& r) {
  MlaLayer m;
  RopeSplitShape& s = m.rope.shape;
  for (int64_t* v : {&s.num_kv_heads, &s.head_dim, &s.rope_dim, &s.freqfold}) {
    CARE_ASSIGN_OR_RETURN(*v, r.I64());
  }
  CARE_ASSIGN_OR_RETURN(m.rope.pe, r.MatD());
  CARE_ASSIGN_OR_RETURN(m.rope.rope_energy, r.F64());
  CARE_ASSIGN_OR_RETURN(m.w_down, r.MatF());
  CARE_ASSIGN_OR_RETURN(m.up_k, r.MatF());
  CARE_ASSIGN_OR_RETURN(m.up_v, r.MatF());
  CARE_ASSIGN_OR_RETURN(m.q_scale, r.F64());
  CARE_ASSIGN_OR_RETURN(int64_t a, r.I64());
  CARE_ASSIGN_OR_RETURN(int64_t qa, r.I64());
  CARE_ASSIGN_OR_RETURN(int64_t bias, r.I64());
  m.alpha_log2 = static_cast<int>(a);
  m.q_alpha_log2 = static_cast<int>(qa);
  m.bias_channel = bias != 0;
  for (double* v :
       {&m.norm_error_mean, &m.norm_error_max, &m.retained_energy,
        &m.calib_error_k, &m.calib_error_v, &m.balance_k, &m.balance_v,
        &m.nope_dropped_error, &m.nope_corrected_error,
        &m.scaling.damping_added, &m.scaling.jitter_added}) {
    CARE_ASSIGN_OR_RETURN(*v, r.F64());
  }
  CARE_ASSIGN_OR_RETURN(m.scaling.clamped_eigenvalues, r.I64());
  CARE_ASSIGN_OR_RETURN(m.scaling.zero_channels, r.I64());
  CARE_ASSIGN_OR_RETURN(int64_t fallback, r.I64());
  m.scaling.identity_fallback = fallback != 0;
  CARE_ASSIGN_OR_RETURN(m.scaling.note, r.Str());
  CARE_ASSIGN_OR_RETURN(m.q_fold, r.VecF());
  CARE_ASSIGN_OR_RETURN(m.k_fold, r.VecF());
  CARE_ASSIGN_OR_RETURN(m.q_regression, r.MatF());
  CARE_ASSIGN_OR_RETURN(m.k_regression, r.MatF());
  CARE_ASSIGN_OR_RETURN(int64_t n, r.I64());
  if (n < 0 || n > (int64_t{1} << 32)) {
    return absl::DataLossError(absl::StrCat("bad correction count ", n));
  }
  m.nope_correction.resize(n);
  for (Eigen::Matrix2d& c : m.nope_correction) {
    CARE_RETURN_IF_ERROR(r.Raw(c.data(), 32));
  }
  CARE_ASSIGN_OR_RETURN(m.o_proj, r.MatF());
  if (m.up_k.rows() != m.w_down.cols() || m.up_v.rows() != m.w_down.cols() ||
      m.rope.pe.rows() != s.rope_dim) {
    return absl::DataLossError("inconsistent layer shapes");
  }
  return m;
}

void WriteReport(Writer& w, const MlaLayerReport& r) {
  w.I64(r.alpha_log2);
  for (double v :
       {r.rope_energy, r.balance_k, r.retained_energy, r.calib_error_k,
        r.calib_error_v, r.heldout_error_k, r.heldout_error_v,
        r.norm_error_mean, r.norm_error_max, r.nope_dropped_error,
        r.nope_corrected_error, r.o_proj_error_before, r.o_proj_error_after}) {
    w.F64(v);
  }
  w.I64(r.o_proj_refit ? 1 : 0);
  w.Str(r.note);
}

absl::StatusOr<MlaLayerReport> ReadReport(Reader& r) {
  MlaLayerReport out;
  CARE_ASSIGN_OR_RETURN(int64_t a, r.I64());
  out.alpha_log2 = static_cast<int>(a);
  for (double* v :
       {&out.rope_energy, &out.balance_k, &out.retained_energy,
        &out.calib_error_k, &out.calib_error_v, &out.heldout_error_k,
        &out.heldout_error_v, &out.norm_error_mean, &out.norm_error_max,
        &out.nope_dropped_error, &out.nope_corrected_error,
        &out.o_proj_error_before, &out.o_proj_error_after}) {
    CARE_ASSIGN_OR_RETURN(*v, r.F64());
  }
  CARE_ASSIGN_OR_RETURN(int64_t refit, r.I64());
  out.o_proj_refit = refit != 0;
  CARE_ASSIGN_OR_RETURN(out.note, r.Str());
  return out;
}

std::string BlobName(int64_t layer) {
  return absl::StrFormat("mla-layer-%05d", layer);
}

}  // namespace

std::string SerializeCalibratedLayer(const std::string& key,
                                     const CalibratedLayer& layer) {
  Writer w;
  w.Str(kFormat);
  w.Str(key);
  w.I64(static_cast<int64_t>(layer.layers.size()));
  for (size_t i = 0; i < layer.layers.size(); ++i) {
    WriteLayer(w, layer.layers[i]);
    WriteLayer(w, layer.rope_only[i]);
    WriteReport(w, layer.reports[i]);
  }
  return w.Take();
}

absl::StatusOr<CalibratedLayer> ParseCalibratedLayer(absl::string_view bytes,
                                                     const std::string& key,
                                                     size_t candidates) {
  Reader r(bytes);
  CARE_ASSIGN_OR_RETURN(std::string format, r.Str());
  CARE_ASSIGN_OR_RETURN(std::string stored_key, r.Str());
  CARE_ASSIGN_OR_RETURN(int64_t n, r.I64());
  if (format != kFormat || stored_key != key ||
      n != static_cast<int64_t>(candidates)) {
    return absl::DataLossError(
        absl::StrCat("saved for other candidates or options (", format, ", ",
                     stored_key, ", ", n, " candidates)"));
  }
  CalibratedLayer out;
  for (int64_t i = 0; i < n; ++i) {
    CARE_ASSIGN_OR_RETURN(MlaLayer layer, ReadLayer(r));
    CARE_ASSIGN_OR_RETURN(MlaLayer full, ReadLayer(r));
    CARE_ASSIGN_OR_RETURN(MlaLayerReport report, ReadReport(r));
    out.layers.push_back(std::move(layer));
    out.rope_only.push_back(std::move(full));
    out.reports.push_back(std::move(report));
  }
  if (!r.done()) return absl::DataLossError("trailing bytes");
  return out;
}

void SaveCalibratedLayer(ResumeState& state, int64_t layer,
                         const std::string& key, const CalibratedLayer& fits) {
  absl::Status s =
      state.SaveBlob(BlobName(layer), SerializeCalibratedLayer(key, fits));
  if (!s.ok()) {
    ResumeLog(absl::StrCat("cannot save layer ", layer, ": ", s.message()));
  }
}

std::optional<CalibratedLayer> LoadCalibratedLayer(const ResumeState& state,
                                                   int64_t layer,
                                                   const std::string& key,
                                                   size_t candidates) {
  std::optional<std::string> bytes = state.LoadBlob(BlobName(layer));
  if (!bytes) return std::nullopt;
  absl::StatusOr<CalibratedLayer> parsed =
      ParseCalibratedLayer(*bytes, key, candidates);
  if (!parsed.ok()) {
    ResumeLog(absl::StrCat("ignoring ", BlobName(layer), ": ",
                           parsed.status().message()));
    return std::nullopt;
  }
  return *std::move(parsed);
}

RestoredPass RestorePass(const ResumeState& state, const std::string& key,
                         size_t candidates, int64_t num_layers, int64_t tokens,
                         int64_t dim) {
  RestoredPass out;
  auto load_prefix = [&](int64_t n) {
    for (int64_t l = 0; l < n; ++l) {
      if (!LoadCalibratedLayer(state, l, key, candidates)) return false;
    }
    out.layers = n;
    return true;
  };
  if (std::optional<std::vector<double>> done =
          state.LoadValues(kPassDone, 2)) {
    if (load_prefix(num_layers)) {
      out.heldout_original =
          engine::NllSum{(*done)[0], static_cast<int64_t>((*done)[1])};
      ResumeLog(absl::StrCat("deepseek-v3 calibration of all ", num_layers,
                             " layers restored from ", state.dir()));
      return out;
    }
  }
  std::optional<SavedHidden> hidden = state.LoadHidden(tokens, dim);
  if (!hidden || hidden->next_layer < 1 || hidden->next_layer > num_layers) {
    return out;
  }
  if (!load_prefix(hidden->next_layer)) {
    ResumeLog(absl::StrCat("a deepseek-v3 layer below the snapshot at layer ",
                           hidden->next_layer, " is unusable; starting over"));
    return out;
  }
  ResumeLog(absl::StrCat("resuming deepseek-v3 calibration at layer ",
                         hidden->next_layer, " of ", num_layers, " from ",
                         state.dir()));
  out.hidden = std::move(hidden);
  return out;
}

void SavePassDone(ResumeState& state, const engine::NllSum& heldout) {
  SaveValuesOrLog(&state, kPassDone,
                  {heldout.sum, static_cast<double>(heldout.count)});
  state.DropHidden();
}

}  // namespace care::convert::mla
