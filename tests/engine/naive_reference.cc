#include "naive_reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"

namespace care::engine::testing {

namespace {

using Vec = std::vector<double>;

struct W {
  std::vector<int64_t> shape;
  std::vector<double> v;
  double at(int64_t r, int64_t c) const { return v[r * shape[1] + c]; }
};

W Get(const TensorSource& s, const std::string& name) {
  auto t = s.LoadF32(name);
  if (!t.ok()) {
    ADD_FAILURE() << t.status();
    return W{};
  }
  return W{t->shape, Vec(t->data.begin(), t->data.end())};
}

std::string L(int64_t l, const std::string& suffix) {
  return absl::StrCat("model.layers.", l, ".", suffix);
}

// y = W x (+ b) with W [out, in].
Vec MatVec(const W& w, const Vec& x, const W* bias = nullptr) {
  Vec y(w.shape[0], 0.0);
  for (int64_t o = 0; o < w.shape[0]; ++o) {
    for (int64_t i = 0; i < w.shape[1]; ++i) y[o] += w.at(o, i) * x[i];
    if (bias != nullptr) y[o] += bias->v[o];
  }
  return y;
}

Vec RmsNorm(const Vec& x, const Vec& w, double eps) {
  double ss = 0;
  for (double a : x) ss += a * a;
  const double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

double Silu(double a) { return a / (1.0 + std::exp(-a)); }

Vec SwiGlu(const TensorSource& s, const std::string& prefix, const Vec& x) {
  const W gate = Get(s, prefix + "gate_proj.weight");
  const W up = Get(s, prefix + "up_proj.weight");
  const W down = Get(s, prefix + "down_proj.weight");
  Vec g = MatVec(gate, x), u = MatVec(up, x);
  for (size_t i = 0; i < g.size(); ++i) g[i] = Silu(g[i]) * u[i];
  return MatVec(down, g);
}

// Rotates head vector h (d_h entries) at position p.
void Rope(const Vec& inv_freq, double factor, int64_t p, double* h) {
  const int64_t half = inv_freq.size();
  std::vector<double> out(2 * half);
  for (int64_t j = 0; j < 2 * half; ++j) {
    const double angle = p * inv_freq[j % half];
    const double c = std::cos(angle) * factor, s = std::sin(angle) * factor;
    const double rot = j < half ? -h[j + half] : h[j - half];  // rotate_half
    out[j] = h[j] * c + rot * s;
  }
  std::copy(out.begin(), out.end(), h);
}

}  // namespace

std::vector<double> NaiveInvFreq(const ModelConfig& c, double* attn_factor) {
  const int64_t dim =
      static_cast<int64_t>(c.head_dim * c.partial_rotary_factor);
  const double base = c.rope_theta;
  Vec inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    inv[i] = 1.0 / std::pow(base, (2.0 * i) / dim);
  }
  *attn_factor = 1.0;
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == RopeScalingType::kLinear) {
    for (double& f : inv) f = f / rs.factor;
  } else if (rs.type == RopeScalingType::kLlama3) {
    const double old_ctx = rs.original_max_position_embeddings;
    const double low_wl = old_ctx / rs.low_freq_factor;
    const double high_wl = old_ctx / rs.high_freq_factor;
    for (double& f : inv) {
      const double wl = 2 * std::numbers::pi / f;
      double g = wl > low_wl ? f / rs.factor : f;
      const double smooth = (old_ctx / wl - rs.low_freq_factor) /
                            (rs.high_freq_factor - rs.low_freq_factor);
      const bool medium = !(wl < high_wl) && !(wl > low_wl);
      if (medium) g = (1 - smooth) * g / rs.factor + smooth * g;
      f = g;
    }
  } else if (rs.type == RopeScalingType::kYarn) {
    const double orig = rs.original_max_position_embeddings;
    auto corr = [&](double rot) {
      return dim * std::log(orig / (rot * 2 * std::numbers::pi)) /
             (2 * std::log(base));
    };
    double low = std::max(std::floor(corr(rs.beta_fast)), 0.0);
    double high = std::min(std::ceil(corr(rs.beta_slow)), dim - 1.0);
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < dim / 2; ++i) {
      const double pos_freq = std::pow(base, (2.0 * i) / dim);
      const double extra = 1.0 / pos_freq, inter = 1.0 / (rs.factor * pos_freq);
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      const double extra_factor = 1 - ramp;
      inv[i] = inter * (1 - extra_factor) + extra * extra_factor;
    }
    *attn_factor = rs.attention_factor.value_or(
        rs.factor <= 1 ? 1.0 : 0.1 * std::log(rs.factor) + 1.0);
  }
  return inv;
}

NaiveResult NaiveForward(const ModelConfig& c, const TensorSource& s,
                         const std::vector<int32_t>& ids) {
  const int64_t T = ids.size(), D = c.hidden_size, dh = c.head_dim;
  const int64_t nh = c.num_attention_heads, g = c.num_key_value_heads;
  const double eps = c.rms_norm_eps;
  double attn_factor = 1.0;
  const Vec inv_freq = NaiveInvFreq(c, &attn_factor);
  NaiveResult result;

  const W embed = Get(s, "model.embed_tokens.weight");
  Rows h(T, Vec(D));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < D; ++i) h[t][i] = embed.at(ids[t], i);
  }
  const bool qwen3 = c.model_type == "qwen3" || c.model_type == "qwen3_moe";
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const Vec ln = Get(s, L(l, "input_layernorm.weight")).v;
    const W wq = Get(s, L(l, "self_attn.q_proj.weight"));
    const W wo = Get(s, L(l, "self_attn.o_proj.weight"));
    W bq, bk, bv, bo;
    const bool bias = c.attention_bias;
    if (bias) {
      bq = Get(s, L(l, "self_attn.q_proj.bias"));
      const std::string kb = c.latent ? "k_b_proj.bias" : "k_proj.bias";
      const std::string vb = c.latent ? "v_b_proj.bias" : "v_proj.bias";
      bk = Get(s, L(l, "self_attn." + kb));
      bv = Get(s, L(l, "self_attn." + vb));
      if (c.model_type != "qwen2" && s.Has(L(l, "self_attn.o_proj.bias"))) {
        bo = Get(s, L(l, "self_attn.o_proj.bias"));
      }
    }
    Rows q(T), k(T), v(T), x(T);
    for (int64_t t = 0; t < T; ++t) {
      x[t] = RmsNorm(h[t], ln, eps);
      q[t] = MatVec(wq, x[t], bias ? &bq : nullptr);
      if (c.latent) {
        const Vec ck = MatVec(Get(s, L(l, "self_attn.k_a_proj.weight")), x[t]);
        const Vec cv = MatVec(Get(s, L(l, "self_attn.v_a_proj.weight")), x[t]);
        k[t] = MatVec(Get(s, L(l, "self_attn.k_b_proj.weight")), ck,
                      bias ? &bk : nullptr);
        v[t] = MatVec(Get(s, L(l, "self_attn.v_b_proj.weight")), cv,
                      bias ? &bv : nullptr);
      } else {
        k[t] = MatVec(Get(s, L(l, "self_attn.k_proj.weight")), x[t],
                      bias ? &bk : nullptr);
        v[t] = MatVec(Get(s, L(l, "self_attn.v_proj.weight")), x[t],
                      bias ? &bv : nullptr);
      }
      for (int64_t hd = 0; hd < nh; ++hd) {
        if (qwen3) {
          const Vec qn = Get(s, L(l, "self_attn.q_norm.weight")).v;
          Vec head(q[t].begin() + hd * dh, q[t].begin() + (hd + 1) * dh);
          head = RmsNorm(head, qn, eps);
          std::copy(head.begin(), head.end(), q[t].begin() + hd * dh);
        }
        Rope(inv_freq, attn_factor, t, q[t].data() + hd * dh);
      }
      for (int64_t hd = 0; hd < g; ++hd) {
        if (qwen3) {
          const Vec kn = Get(s, L(l, "self_attn.k_norm.weight")).v;
          Vec head(k[t].begin() + hd * dh, k[t].begin() + (hd + 1) * dh);
          head = RmsNorm(head, kn, eps);
          std::copy(head.begin(), head.end(), k[t].begin() + hd * dh);
        }
        Rope(inv_freq, attn_factor, t, k[t].data() + hd * dh);
      }
    }
    result.kv_input.push_back(x);
    for (int64_t t = 0; t < T; ++t) {
      Vec attn(nh * dh, 0.0);
      for (int64_t hd = 0; hd < nh; ++hd) {
        const int64_t kvh = hd / (nh / g);
        Vec score(t + 1);
        double mx = -1e300;
        for (int64_t u = 0; u <= t; ++u) {
          double dot = 0;
          for (int64_t j = 0; j < dh; ++j) {
            dot += q[t][hd * dh + j] * k[u][kvh * dh + j];
          }
          score[u] = dot / std::sqrt(static_cast<double>(dh));
          mx = std::max(mx, score[u]);
        }
        double sum = 0;
        for (double& a : score) sum += a = std::exp(a - mx);
        for (int64_t u = 0; u <= t; ++u) {
          for (int64_t j = 0; j < dh; ++j) {
            attn[hd * dh + j] += score[u] / sum * v[u][kvh * dh + j];
          }
        }
      }
      const Vec o = MatVec(wo, attn, bo.v.empty() ? nullptr : &bo);
      for (int64_t i = 0; i < D; ++i) h[t][i] += o[i];
    }
    const Vec pln = Get(s, L(l, "post_attention_layernorm.weight")).v;
    for (int64_t t = 0; t < T; ++t) {
      const Vec xm = RmsNorm(h[t], pln, eps);
      Vec y(D, 0.0);
      // transformers' Qwen3MoeDecoderLayer rule, restated here.
      const bool sparse =
          c.model_type == "qwen3_moe" && c.num_experts > 0 &&
          std::find(c.mlp_only_layers.begin(), c.mlp_only_layers.end(), l) ==
              c.mlp_only_layers.end() &&
          (l + 1) % c.decoder_sparse_step == 0;
      if (sparse) {
        const Vec logits = MatVec(Get(s, L(l, "mlp.gate.weight")), xm);
        Vec p(logits.size());
        const double mx = *std::max_element(logits.begin(), logits.end());
        double sum = 0;
        for (size_t e = 0; e < p.size(); ++e)
          sum += p[e] = std::exp(logits[e] - mx);
        for (double& a : p) a /= sum;
        std::vector<int64_t> order(p.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return p[a] > p[b]; });
        double kept = 0;
        for (int64_t j = 0; j < c.num_experts_per_tok; ++j) kept += p[order[j]];
        for (int64_t j = 0; j < c.num_experts_per_tok; ++j) {
          const int64_t e = order[j];
          const double wgt = c.norm_topk_prob ? p[e] / kept : p[e];
          const Vec ye =
              SwiGlu(s, L(l, absl::StrCat("mlp.experts.", e, ".")), xm);
          for (int64_t i = 0; i < D; ++i) y[i] += wgt * ye[i];
        }
      } else {
        y = SwiGlu(s, L(l, "mlp."), xm);
      }
      for (int64_t i = 0; i < D; ++i) h[t][i] += y[i];
    }
  }
  const Vec fn = Get(s, "model.norm.weight").v;
  const W head = Get(s, c.tie_word_embeddings ? "model.embed_tokens.weight"
                                              : "lm_head.weight");
  for (int64_t t = 0; t < T; ++t) {
    result.logits.push_back(MatVec(head, RmsNorm(h[t], fn, eps)));
  }
  return result;
}

}  // namespace care::engine::testing
