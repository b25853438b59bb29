#include "deepseek_v3_reference.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <numbers>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "care/io/checkpoint.h"

namespace care::testing {

namespace {

using nlohmann::json;
using Vec = std::vector<double>;

// ---- config.json, as DeepseekV3Config.__init__ reads it

absl::Status Bad(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("deepseek_v3 reference: config '", key, "' ", what));
}

template <typename T>
absl::Status Read(const json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();  // default
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return Bad(key, "must be a boolean");
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) return Bad(key, "must be an integer");
  } else {
    if (!it->is_number()) return Bad(key, "must be a number");
  }
  *out = it->get<T>();
  return absl::OkStatus();
}

double Num(const json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

// ---- tensors

struct W {
  std::vector<int64_t> shape;
  Vec v;
  int64_t rows() const { return shape.size() == 2 ? shape[0] : 1; }
  int64_t cols() const { return shape.back(); }
  double at(int64_t r, int64_t c) const { return v[r * cols() + c]; }
};

class Weights {
 public:
  explicit Weights(const TensorSource& s) : s_(s) {}
  // The tensor, shape-checked; an error is kept and reported at the end.
  W Get(const std::string& name, std::vector<int64_t> shape) {
    auto t = s_.LoadF32(name);
    if (!t.ok()) {
      Fail(t.status());
      return W{shape, Vec(Numel(shape), 0.0)};
    }
    if (t->shape != shape) {
      Fail(absl::InvalidArgumentError(absl::StrCat(
          "deepseek_v3 reference: tensor '", name, "' has shape ",
          ShapeString(t->shape), ", expected ", ShapeString(shape))));
      return W{shape, Vec(Numel(shape), 0.0)};
    }
    return W{t->shape, Vec(t->data.begin(), t->data.end())};
  }
  bool Has(const std::string& name) const { return s_.Has(name); }
  const absl::Status& status() const { return status_; }

 private:
  static int64_t Numel(const std::vector<int64_t>& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
  }
  void Fail(const absl::Status& st) {
    if (status_.ok()) status_ = st;
  }
  const TensorSource& s_;
  absl::Status status_;
};

std::string L(int64_t l, const std::string& suffix) {
  return absl::StrCat("model.layers.", l, ".", suffix);
}

// y = W x (+ b), W [out, in].
Vec MatVec(const W& w, const Vec& x, const W* bias = nullptr) {
  Vec y(w.rows(), 0.0);
  for (int64_t o = 0; o < w.rows(); ++o) {
    double acc = 0;
    for (int64_t i = 0; i < w.cols(); ++i) acc += w.at(o, i) * x[i];
    y[o] = acc + (bias != nullptr ? bias->v[o] : 0.0);
  }
  return y;
}

// DeepseekV3RMSNorm: x / sqrt(mean(x²) + eps) · weight.
Vec RmsNorm(const Vec& x, const Vec& w, double eps) {
  double ss = 0;
  for (double a : x) ss += a * a;
  const double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

double Silu(double a) { return a / (1.0 + std::exp(-a)); }

// DeepseekV3MLP: down(silu(gate x) · up x).
Vec Mlp(Weights& s, const std::string& prefix, int64_t D, int64_t I,
        const Vec& x) {
  const W gate = s.Get(prefix + "gate_proj.weight", {I, D});
  const W up = s.Get(prefix + "up_proj.weight", {I, D});
  const W down = s.Get(prefix + "down_proj.weight", {D, I});
  Vec g = MatVec(gate, x), u = MatVec(up, x);
  for (int64_t i = 0; i < I; ++i) g[i] = Silu(g[i]) * u[i];
  return MatVec(down, g);
}

// apply_rotary_pos_emb(_interleave) on one rotary vector x [d] at position
// p: with rope_interleave the pairs (x0, x1), (x2, x3), .. are first
// gathered as [x0, x2, .., x1, x3, ..]; then x·cos + rotate_half(x)·sin with
// cos/sin = cat(freqs, freqs) scaled by the attention factor.
Vec Rope(const Vec& inv_freq, double factor, bool interleave, int64_t p,
         const Vec& x) {
  const int64_t d = x.size(), half = d / 2;
  Vec in(d);
  for (int64_t i = 0; i < d; ++i) {
    in[i] = interleave ? (i < half ? x[2 * i] : x[2 * (i - half) + 1]) : x[i];
  }
  Vec out(d);
  for (int64_t j = 0; j < d; ++j) {
    const double angle = static_cast<double>(p) * inv_freq[j % half];
    const double c = std::cos(angle) * factor, s = std::sin(angle) * factor;
    const double rot = j < half ? -in[j + half] : in[j - half];
    out[j] = in[j] * c + rot * s;
  }
  return out;
}

double YarnGetMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

std::string RopeType(const json& rs) {
  if (!rs.is_object()) return "default";
  if (rs.contains("rope_type") && rs["rope_type"].is_string()) {
    return rs["rope_type"].get<std::string>();
  }
  if (rs.contains("type") && rs["type"].is_string()) {
    return rs["type"].get<std::string>();
  }
  return "default";
}

// DeepseekV3TopkRouter / route_tokens_to_experts for one token: the
// (expert, weight) pairs it keeps.
std::vector<std::pair<int64_t, double>> Route(const DeepseekV3RefConfig& c,
                                              const Vec& logits,
                                              const Vec& bias) {
  const int64_t E = c.n_routed_experts, G = c.n_group, per = E / G;
  Vec score(E), choice(E);
  for (int64_t e = 0; e < E; ++e) {
    score[e] = 1.0 / (1.0 + std::exp(-logits[e]));
    choice[e] = score[e] + bias[e];  // selection only
  }
  // Group score: the sum of the group's two largest corrected scores.
  Vec group_score(G);
  for (int64_t g = 0; g < G; ++g) {
    Vec v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
    std::sort(v.begin(), v.end(), std::greater<>());
    group_score[g] = v[0] + v[1];
  }
  std::vector<int64_t> groups(G);
  std::iota(groups.begin(), groups.end(), 0);
  std::stable_sort(groups.begin(), groups.end(), [&](int64_t a, int64_t b) {
    return group_score[a] > group_score[b];
  });
  std::vector<bool> kept(G, false);
  for (int64_t i = 0; i < c.topk_group; ++i) kept[groups[i]] = true;
  // Experts of dropped groups compete with a corrected score of 0
  // (masked_fill(~mask, 0.0)), not -inf.
  for (int64_t e = 0; e < E; ++e) {
    if (!kept[e / per]) choice[e] = 0.0;
  }
  std::vector<int64_t> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return choice[a] > choice[b]; });
  std::vector<std::pair<int64_t, double>> out;
  double sum = 0;
  for (int64_t j = 0; j < c.num_experts_per_tok; ++j) {
    out.emplace_back(order[j], score[order[j]]);
    sum += score[order[j]];
  }
  for (auto& [e, w] : out) {
    if (c.norm_topk_prob) w /= sum + 1e-20;
    w *= c.routed_scaling_factor;
  }
  return out;
}

}  // namespace

absl::StatusOr<DeepseekV3RefConfig> ParseDeepseekV3RefConfig(const json& j) {
  if (!j.is_object()) return Bad("<root>", "is not an object");
  if (j.value("model_type", std::string()) != "deepseek_v3") {
    return Bad("model_type", "is not deepseek_v3");
  }
  DeepseekV3RefConfig c;
  absl::Status st;
  auto rd = [&](const char* key, auto* out) {
    if (st.ok()) st = Read(j, key, out);
  };
  rd("vocab_size", &c.vocab_size);
  rd("hidden_size", &c.hidden_size);
  rd("intermediate_size", &c.intermediate_size);
  rd("moe_intermediate_size", &c.moe_intermediate_size);
  rd("num_hidden_layers", &c.num_hidden_layers);
  rd("num_attention_heads", &c.num_attention_heads);
  // The constructor default is 128; only an explicit null means "as many as
  // num_attention_heads".
  rd("num_key_value_heads", &c.num_key_value_heads);
  if (j.contains("num_key_value_heads") && j["num_key_value_heads"].is_null()) {
    c.num_key_value_heads = c.num_attention_heads;
  }
  rd("n_shared_experts", &c.n_shared_experts);
  rd("n_routed_experts", &c.n_routed_experts);
  rd("routed_scaling_factor", &c.routed_scaling_factor);
  rd("kv_lora_rank", &c.kv_lora_rank);
  rd("qk_rope_head_dim", &c.qk_rope_head_dim);
  rd("v_head_dim", &c.v_head_dim);
  rd("qk_nope_head_dim", &c.qk_nope_head_dim);
  rd("n_group", &c.n_group);
  rd("topk_group", &c.topk_group);
  rd("num_experts_per_tok", &c.num_experts_per_tok);
  rd("first_k_dense_replace", &c.first_k_dense_replace);
  rd("norm_topk_prob", &c.norm_topk_prob);
  rd("max_position_embeddings", &c.max_position_embeddings);
  rd("rms_norm_eps", &c.rms_norm_eps);
  rd("tie_word_embeddings", &c.tie_word_embeddings);
  rd("rope_interleave", &c.rope_interleave);
  rd("attention_bias", &c.attention_bias);
  rd("rope_theta", &c.rope_theta);
  if (!st.ok()) return st;
  // q_lora_rank: absent -> 1536, null -> no low-rank query.
  if (auto it = j.find("q_lora_rank"); it != j.end()) {
    if (it->is_null()) {
      c.q_lora_rank.reset();
    } else if (it->is_number_integer()) {
      c.q_lora_rank = it->get<int64_t>();
    } else {
      return Bad("q_lora_rank", "must be an integer or null");
    }
  }
  // rope_scaling (transformers 4) or rope_parameters (transformers 5, which
  // may also carry rope_theta).
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    c.rope_scaling = j["rope_scaling"];
  } else if (j.contains("rope_parameters") &&
             j["rope_parameters"].is_object()) {
    c.rope_scaling = j["rope_parameters"];
    if (!j.contains("rope_theta")) {
      c.rope_theta = Num(c.rope_scaling, "rope_theta", c.rope_theta);
    }
  }
  // DeepseekV3Config sets head_dim = qk_rope_head_dim, but a head_dim key
  // overrides it, and the rotary table then no longer fits q_rot / k_rot.
  if (j.contains("head_dim") && !j["head_dim"].is_null() &&
      j["head_dim"] != json(c.qk_rope_head_dim)) {
    return Bad("head_dim", absl::StrCat("(", j["head_dim"].dump(),
                                        ") differs from qk_rope_head_dim (",
                                        c.qk_rope_head_dim, ")"));
  }
  // kv_b_proj yields one K/V per query head; repeat_kv by n_h / g would not
  // fit.
  if (c.num_key_value_heads != c.num_attention_heads) {
    return Bad("num_key_value_heads",
               absl::StrCat("(", c.num_key_value_heads,
                            ") differs from num_attention_heads (",
                            c.num_attention_heads, ")"));
  }
  // group_scores takes topk(2) inside each group.
  if (c.n_group < 1 || c.n_routed_experts % c.n_group != 0 ||
      c.n_routed_experts / c.n_group < 2 || c.topk_group > c.n_group ||
      c.num_experts_per_tok > c.n_routed_experts) {
    return Bad("n_group", "/ topk_group / num_experts_per_tok do not fit");
  }
  if (c.qk_rope_head_dim % 2 != 0) return Bad("qk_rope_head_dim", "is odd");
  return c;
}

absl::StatusOr<std::vector<double>> DeepseekV3RefInvFreq(
    const DeepseekV3RefConfig& c, double* attention_factor) {
  const json& rs = c.rope_scaling;
  const std::string type = RopeType(rs);
  const int64_t dim = c.qk_rope_head_dim;  // config.head_dim
  const double base = c.rope_theta;
  Vec inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    inv[i] = 1.0 / std::pow(base, (2.0 * i) / dim);
  }
  *attention_factor = 1.0;
  if (type == "default") return inv;
  const double factor = Num(rs, "factor", 1.0);
  if (type == "linear") {
    for (double& f : inv) f /= factor;
  } else if (type == "llama3") {
    const double old_ctx = Num(rs, "original_max_position_embeddings", 0);
    const double low = Num(rs, "low_freq_factor", 1),
                 high = Num(rs, "high_freq_factor", 4);
    const double low_wl = old_ctx / low, high_wl = old_ctx / high;
    for (double& f : inv) {
      const double wl = 2 * std::numbers::pi / f;
      const double g = wl > low_wl ? f / factor : f;
      const double smooth = (old_ctx / wl - low) / (high - low);
      const bool medium = !(wl < high_wl) && !(wl > low_wl);
      f = medium ? (1 - smooth) * g / factor + smooth * g : g;
    }
  } else if (type == "yarn") {
    const double orig = Num(rs, "original_max_position_embeddings",
                            static_cast<double>(c.max_position_embeddings));
    const double mscale = Num(rs, "mscale", 0),
                 mscale_all = Num(rs, "mscale_all_dim", 0);
    if (rs.contains("attention_factor") && rs["attention_factor"].is_number()) {
      *attention_factor = rs["attention_factor"].get<double>();
    } else if (mscale != 0 && mscale_all != 0) {
      *attention_factor =
          YarnGetMscale(factor, mscale) / YarnGetMscale(factor, mscale_all);
    } else {
      *attention_factor = YarnGetMscale(factor, 1.0);
    }
    double beta_fast = Num(rs, "beta_fast", 0),
           beta_slow = Num(rs, "beta_slow", 0);
    if (beta_fast == 0) beta_fast = 32;  // `or 32`
    if (beta_slow == 0) beta_slow = 1;
    const bool truncate =
        !(rs.contains("truncate") && rs["truncate"].is_boolean() &&
          !rs["truncate"].get<bool>());
    auto corr = [&](double rot) {
      return dim * std::log(orig / (rot * 2 * std::numbers::pi)) /
             (2 * std::log(base));
    };
    double lo = corr(beta_fast), hi = corr(beta_slow);
    if (truncate) {
      lo = std::floor(lo);
      hi = std::ceil(hi);
    }
    lo = std::max(lo, 0.0);
    hi = std::min(hi, dim - 1.0);
    if (lo == hi) hi += 0.001;
    for (int64_t i = 0; i < dim / 2; ++i) {
      const double pos_freq = std::pow(base, (2.0 * i) / dim);
      const double extra = 1.0 / pos_freq, inter = 1.0 / (factor * pos_freq);
      const double ramp = std::clamp((i - lo) / (hi - lo), 0.0, 1.0);
      const double extra_factor = 1 - ramp;
      inv[i] = inter * (1 - extra_factor) + extra * extra_factor;
    }
  } else {
    return Bad("rope_scaling",
               absl::StrCat("type '", type, "' is not modelled"));
  }
  return inv;
}

double DeepseekV3RefSoftmaxScale(const DeepseekV3RefConfig& c) {
  double scale = 1.0 / std::sqrt(static_cast<double>(c.qk_head_dim()));
  if (RopeType(c.rope_scaling) != "default") {
    const double all_dim = Num(c.rope_scaling, "mscale_all_dim", 0);
    if (all_dim != 0) {
      const double m =
          YarnGetMscale(Num(c.rope_scaling, "factor", 1.0), all_dim);
      scale *= m * m;
    }
  }
  return scale;
}

absl::StatusOr<RefRows> DeepseekV3ReferenceLogits(
    const DeepseekV3RefConfig& c, const TensorSource& source,
    const std::vector<int32_t>& ids) {
  const int64_t T = ids.size(), D = c.hidden_size, V = c.vocab_size;
  const int64_t nh = c.num_attention_heads, nope = c.qk_nope_head_dim,
                dr = c.qk_rope_head_dim, dv = c.v_head_dim,
                qk = c.qk_head_dim(), r = c.kv_lora_rank;
  const double eps = c.rms_norm_eps;
  const double latent_eps = 1e-6;  // q_a_layernorm / kv_a_layernorm default
  double factor = 1.0;
  absl::StatusOr<Vec> inv_or = DeepseekV3RefInvFreq(c, &factor);
  if (!inv_or.ok()) return inv_or.status();
  const Vec inv_freq = *std::move(inv_or);
  const double scaling = DeepseekV3RefSoftmaxScale(c);
  Weights s(source);

  const W embed = s.Get("model.embed_tokens.weight", {V, D});
  RefRows h(T, Vec(D));
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V) {
      return absl::InvalidArgumentError(
          absl::StrCat("deepseek_v3 reference: token id ", ids[t]));
    }
    for (int64_t i = 0; i < D; ++i) h[t][i] = embed.at(ids[t], i);
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string a = "self_attn.";
    const Vec in_ln = s.Get(L(l, "input_layernorm.weight"), {D}).v;
    W wq, wqa, bqa, qa_ln, wqb;
    if (c.q_lora_rank) {
      const int64_t rq = *c.q_lora_rank;
      wqa = s.Get(L(l, a + "q_a_proj.weight"), {rq, D});
      if (c.attention_bias) bqa = s.Get(L(l, a + "q_a_proj.bias"), {rq});
      qa_ln = s.Get(L(l, a + "q_a_layernorm.weight"), {rq});
      wqb = s.Get(L(l, a + "q_b_proj.weight"), {nh * qk, rq});
    } else {
      wq = s.Get(L(l, a + "q_proj.weight"), {nh * qk, D});
    }
    const W wkva = s.Get(L(l, a + "kv_a_proj_with_mqa.weight"), {r + dr, D});
    W bkva, bo;
    if (c.attention_bias) {
      bkva = s.Get(L(l, a + "kv_a_proj_with_mqa.bias"), {r + dr});
      bo = s.Get(L(l, a + "o_proj.bias"), {D});
    }
    const Vec kv_ln = s.Get(L(l, a + "kv_a_layernorm.weight"), {r}).v;
    const W wkvb = s.Get(L(l, a + "kv_b_proj.weight"), {nh * (nope + dv), r});
    const W wo = s.Get(L(l, a + "o_proj.weight"), {D, nh * dv});

    // Per token: q [nh][qk] as [q_nope; rotated q_rot], k the same with the
    // shared rotated k_rot, v [nh][dv].
    std::vector<std::vector<Vec>> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const Vec x = RmsNorm(h[t], in_ln, eps);
      Vec qs;
      if (c.q_lora_rank) {
        Vec qa = MatVec(wqa, x, c.attention_bias ? &bqa : nullptr);
        qs = MatVec(wqb, RmsNorm(qa, qa_ln.v, latent_eps));
      } else {
        qs = MatVec(wq, x);
      }
      const Vec ckv = MatVec(wkva, x, c.attention_bias ? &bkva : nullptr);
      const Vec c_kv(ckv.begin(), ckv.begin() + r);
      const Vec k_rot = Rope(inv_freq, factor, c.rope_interleave, t,
                             Vec(ckv.begin() + r, ckv.begin() + r + dr));
      const Vec kv = MatVec(wkvb, RmsNorm(c_kv, kv_ln, latent_eps));
      for (int64_t hd = 0; hd < nh; ++hd) {
        const double* qh = qs.data() + hd * qk;
        Vec qv(qh, qh + nope);
        const Vec q_rot = Rope(inv_freq, factor, c.rope_interleave, t,
                               Vec(qh + nope, qh + qk));
        qv.insert(qv.end(), q_rot.begin(), q_rot.end());
        q[t].push_back(std::move(qv));
        const double* kvh = kv.data() + hd * (nope + dv);
        Vec kh(kvh, kvh + nope);
        kh.insert(kh.end(), k_rot.begin(), k_rot.end());
        k[t].push_back(std::move(kh));
        v[t].emplace_back(kvh + nope, kvh + nope + dv);
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      Vec attn(nh * dv, 0.0);
      for (int64_t hd = 0; hd < nh; ++hd) {
        Vec score(t + 1);
        double mx = -1e300;
        for (int64_t u = 0; u <= t; ++u) {
          double dot = 0;
          for (int64_t j = 0; j < qk; ++j) dot += q[t][hd][j] * k[u][hd][j];
          score[u] = dot * scaling;
          mx = std::max(mx, score[u]);
        }
        double sum = 0;
        for (double& e : score) sum += e = std::exp(e - mx);
        for (int64_t u = 0; u <= t; ++u) {
          for (int64_t j = 0; j < dv; ++j) {
            attn[hd * dv + j] += score[u] / sum * v[u][hd][j];
          }
        }
      }
      const Vec o = MatVec(wo, attn, c.attention_bias ? &bo : nullptr);
      for (int64_t i = 0; i < D; ++i) h[t][i] += o[i];
    }

    const Vec post_ln = s.Get(L(l, "post_attention_layernorm.weight"), {D}).v;
    const bool moe = l >= c.first_k_dense_replace;
    W gate, bias;
    if (moe) {
      gate = s.Get(L(l, "mlp.gate.weight"), {c.n_routed_experts, D});
      bias =
          s.Get(L(l, "mlp.gate.e_score_correction_bias"), {c.n_routed_experts});
    }
    for (int64_t t = 0; t < T; ++t) {
      const Vec xm = RmsNorm(h[t], post_ln, eps);
      Vec y(D, 0.0);
      if (!moe) {
        y = Mlp(s, L(l, "mlp."), D, c.intermediate_size, xm);
      } else {
        for (const auto& [e, w] : Route(c, MatVec(gate, xm), bias.v)) {
          const Vec ye = Mlp(s, L(l, absl::StrCat("mlp.experts.", e, ".")), D,
                             c.moe_intermediate_size, xm);
          for (int64_t i = 0; i < D; ++i) y[i] += w * ye[i];
        }
        if (c.n_shared_experts > 0) {
          const Vec ys = Mlp(s, L(l, "mlp.shared_experts."), D,
                             c.moe_intermediate_size * c.n_shared_experts, xm);
          for (int64_t i = 0; i < D; ++i) y[i] += ys[i];
        }
      }
      for (int64_t i = 0; i < D; ++i) h[t][i] += y[i];
    }
    if (!s.status().ok()) return s.status();
  }
  const Vec final_ln = s.Get("model.norm.weight", {D}).v;
  const W head =
      c.tie_word_embeddings ? embed : s.Get("lm_head.weight", {V, D});
  RefRows logits;
  for (int64_t t = 0; t < T; ++t) {
    logits.push_back(MatVec(head, RmsNorm(h[t], final_ln, eps)));
  }
  if (!s.status().ok()) return s.status();
  return logits;
}

absl::StatusOr<RefRows> DeepseekV3ReferenceLogits(
    const std::string& dir, const std::vector<int32_t>& ids) {
  std::ifstream in(dir + "/config.json");
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", dir, "/config.json"));
  }
  const json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/config.json is not JSON"));
  }
  absl::StatusOr<DeepseekV3RefConfig> c = ParseDeepseekV3RefConfig(j);
  if (!c.ok()) return c.status();
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> ckpt =
      io::Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  return DeepseekV3ReferenceLogits(*c, **ckpt, ids);
}

}  // namespace care::testing
