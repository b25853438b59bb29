// Exact identities of the per-layer DeepSeek-V3 export: at full latent rank
// the exported tensors, run the way transformers' DeepseekV3Attention runs
// them (scores written out below in float64), reproduce the GQA layer's
// scores and values: always at equal query/key positions (where RoPE
// cancels), and at every position pair when the RoPE part is kept whole
// (one KV head, rope_dim = head_dim, freqfold 1).
#include "care/convert/mla_export/mla_layer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "care/convert/covariance.h"
#include "care/convert/mla_export/mla_tensors.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {
namespace {

using Vec = Eigen::VectorXd;

constexpr int64_t kD = 40;
constexpr double kTheta = 10000.0;

struct Shape {
  int64_t n_h, g, d_h, rope, freqfold;
};

MatrixRM Random(int64_t rows, int64_t cols, unsigned seed) {
  std::srand(seed);
  return MatrixRM::Random(rows, cols);
}

LayerStatistics Stats(const MatrixRM& x) {
  CovarianceAccumulator acc(x.cols());
  EXPECT_TRUE(acc.Add(x).ok());
  return {acc.Covariance(), acc.MeanAbs(), acc.tokens()};
}

// Correlated activations with a few dominant directions.
MatrixRM Activations(int64_t tokens, unsigned seed) {
  MatrixRM a = Random(kD, kD, seed);
  for (int64_t j = 0; j < kD; ++j) a.row(j) *= std::pow(10.0f, -1.5f * j / kD);
  return Random(tokens, kD, seed + 1) * a;
}

// Llama RoPE (half split): pair (i, i + d/2) at theta^(-2i/d).
Vec HalfSplitRope(const Vec& x, int64_t pos, double theta) {
  const int64_t d = x.size(), half = d / 2;
  Vec y = x;
  for (int64_t i = 0; i < half; ++i) {
    const double a = pos * std::pow(theta, -2.0 * i / d);
    y(i) = x(i) * std::cos(a) - x(i + half) * std::sin(a);
    y(i + half) = x(i + half) * std::cos(a) + x(i) * std::sin(a);
  }
  return y;
}

// DeepSeek-V3 with rope_interleave: de-interleave (2i, 2i+1) -> (i, i+d/2),
// then the half-split rotation.
Vec InterleavedRope(const Vec& x, int64_t pos, double theta) {
  const int64_t d = x.size(), half = d / 2;
  Vec z(d);
  for (int64_t i = 0; i < half; ++i) {
    z(i) = x(2 * i);
    z(i + half) = x(2 * i + 1);
  }
  return HalfSplitRope(z, pos, theta);
}

struct Case {
  Shape s;
  LayerWeights w;
  MatrixRM wq;  // [n_h·d_h, D]
  MlaLayer mla;
  AttentionTensors t;
  int64_t rank;
};

Case Build(const Shape& s, Method method, unsigned seed) {
  Case c;
  c.s = s;
  c.w.w_k = Random(kD, s.g * s.d_h, seed + 10);
  c.w.w_v = Random(kD, s.g * s.d_h, seed + 11);
  c.wq = Random(s.n_h * s.d_h, kD, seed + 12);
  MlaLayerOptions o;
  o.num_heads = s.n_h;
  o.rope = {s.g, s.d_h, s.rope, s.freqfold};
  c.rank = std::min<int64_t>(kD, 2 * s.g * s.d_h);
  o.kv_lora_rank = c.rank;
  o.factorize.method = method;
  absl::StatusOr<MlaLayer> m =
      ExportLayer(c.w, Stats(Activations(400, seed)), o);
  EXPECT_TRUE(m.ok()) << m.status();
  c.mla = *m;
  Tensor q;
  q.shape = {c.wq.rows(), c.wq.cols()};
  q.data.assign(c.wq.data(), c.wq.data() + c.wq.size());
  absl::StatusOr<AttentionTensors> t =
      BuildAttentionTensors(0, c.mla, q, c.w, s.n_h);
  EXPECT_TRUE(t.ok()) << t.status();
  c.t = *t;
  return c;
}

Eigen::MatrixXd Get(const Case& c, const std::string& name) {
  const Tensor& t = c.t.tensors.at(name);
  return t.matrix().cast<double>();
}

struct Attn {
  double score;
  Vec v;
};

// Original GQA: score of query head h at pa against the key of token xb at
// pb, and the value head it reads.
Attn Original(const Case& c, const Vec& xa, const Vec& xb, int64_t h,
              int64_t pa, int64_t pb) {
  const int64_t dh = c.s.d_h, j = h / (c.s.n_h / c.s.g);
  const Vec q = c.wq.cast<double>().middleRows(h * dh, dh) * xa;
  const Vec k = c.w.w_k.cast<double>().middleCols(j * dh, dh).transpose() * xb;
  const Vec v = c.w.w_v.cast<double>().middleCols(j * dh, dh).transpose() * xb;
  return {HalfSplitRope(q, pa, kTheta).dot(HalfSplitRope(k, pb, kTheta)) /
              std::sqrt(static_cast<double>(dh)),
          v};
}

// The export as DeepseekV3Attention computes it (q_lora_rank null).
Attn Exported(const Case& c, const Vec& xa, const Vec& xb, int64_t h,
              int64_t pa, int64_t pb) {
  const int64_t dh = c.s.d_h, rope = c.s.rope, r = c.rank;
  const double theta_out = std::pow(kTheta, double(rope) / dh);
  const Vec q = Get(c, io::names::QProj(0)) * xa;  // [n_h·(d_h + R)]
  const Vec a = Get(c, KvAProjName(0)) * xb;       // [r + R]
  const Vec cs = a.head(r);
  const Vec norm_w = Get(c, KvANormName(0)).row(0).transpose();
  const Vec cn =
      (cs / std::sqrt(cs.squaredNorm() / r + 1e-6)).cwiseProduct(norm_w);
  const Vec kv = Get(c, KvBProjName(0)) * cn;  // [n_h·2·d_h]
  const Vec q_nope = q.segment(h * (dh + rope), dh);
  const Vec q_pe = q.segment(h * (dh + rope) + dh, rope);
  const Vec k_nope = kv.segment(2 * h * dh, dh);
  const Vec k_pe = a.tail(rope);
  const double score =
      (q_nope.dot(k_nope) + InterleavedRope(q_pe, pa, theta_out)
                                .dot(InterleavedRope(k_pe, pb, theta_out))) /
      std::sqrt(static_cast<double>(dh + rope));
  return {score, kv.segment(2 * h * dh + dh, dh)};
}

// Float32 tensors with D = 40 terms per product: scores agree to ~1e-5
// relative; the latent norm's linear regime adds <= 2^-30.
constexpr double kTol = 2e-4;

void ExpectSame(const Attn& a, const Attn& b, const std::string& what) {
  const double scale = 1 + std::abs(a.score);
  EXPECT_NEAR(a.score, b.score, kTol * scale) << what;
  EXPECT_LT((a.v - b.v).norm(), kTol * (1 + a.v.norm())) << what;
}

TEST(MlaLayerTest, OneKvHeadWithWholeRopeIsExactAtEveryPosition) {
  const Case c = Build({4, 1, 8, 8, 1}, Method::kCare, 1);
  EXPECT_NEAR(c.mla.rope.rope_energy, 1.0, 1e-12);
  const MatrixRM x = Activations(6, 77);
  for (int64_t h = 0; h < 4; ++h) {
    for (int64_t pa : {0, 3, 17}) {
      for (int64_t pb : {0, 2, 17}) {
        const Vec xa = x.row(h).cast<double>().transpose();
        const Vec xb = x.row(h + 1).cast<double>().transpose();
        ExpectSame(Original(c, xa, xb, h, pa, pb),
                   Exported(c, xa, xb, h, pa, pb),
                   "head " + std::to_string(h) + " pos " + std::to_string(pa) +
                       "/" + std::to_string(pb));
      }
    }
  }
}

TEST(MlaLayerTest, EveryShapeIsExactAtEqualPositionsAndFullRank) {
  for (const Shape& s :
       {Shape{6, 2, 8, 8, 1}, Shape{6, 2, 8, 8, 2}, Shape{6, 2, 8, 4, 2},
        Shape{4, 4, 8, 2, 1}, Shape{8, 2, 16, 8, 4}}) {
    for (Method m : {Method::kCare, Method::kPca, Method::kSvd}) {
      const Case c = Build(s, m, 5);
      const MatrixRM x = Activations(4, 9);
      const Vec xa = x.row(0).cast<double>().transpose();
      const Vec xb = x.row(1).cast<double>().transpose();
      for (int64_t h = 0; h < s.n_h; ++h) {
        for (int64_t p : {0, 11}) {
          ExpectSame(Original(c, xa, xb, h, p, p), Exported(c, xa, xb, h, p, p),
                     "g " + std::to_string(s.g) + " R " +
                         std::to_string(s.rope) + " K " +
                         std::to_string(s.freqfold) + " " + MethodName(m));
        }
      }
    }
  }
}

TEST(MlaLayerTest, LatentNormScaleIsAPowerOfTwoMeetingTheTarget) {
  const Case c = Build({6, 2, 8, 8, 1}, Method::kCare, 3);
  EXPECT_GE(c.mla.alpha_log2, 10);
  EXPECT_LE(c.mla.norm_error_mean, 0x1p-30);
  const Tensor& w = c.t.tensors.at(KvANormName(0));
  for (float v : w.data) {
    int e = 0;
    EXPECT_EQ(std::frexp(v, &e), 0.5f);  // an exact power of two
  }
  MlaLayer m = c.mla;
  MeasureNormError(Activations(50, 4), m);
  EXPECT_GT(m.norm_error_max, 0);
  EXPECT_LT(m.norm_error_max, 1e-6);
}

TEST(MlaLayerTest, TruncationErrorsFallWithRankAndPcaIsUndampedCare) {
  LayerWeights w{Random(kD, 16, 1), Random(kD, 16, 2), {}, {}};
  const LayerStatistics stats = Stats(Activations(400, 3));
  auto errors = [&](Method m, double damping, int64_t r) {
    MlaLayerOptions o;
    o.num_heads = 4;
    o.rope = {2, 8, 8, 1};
    o.kv_lora_rank = r;
    o.factorize = {.method = m, .damping = damping};
    absl::StatusOr<MlaLayer> layer = ExportLayer(w, stats, o);
    EXPECT_TRUE(layer.ok()) << layer.status();
    return std::make_pair(layer->calib_error_k, layer->calib_error_v);
  };
  double last = 2;
  for (int64_t r : {4, 8, 16, 24}) {
    const auto [k, v] = errors(Method::kCare, 0.01, r);
    EXPECT_LT(k + v, last) << r;
    last = k + v;
    const auto pca = errors(Method::kPca, 0.01, r);
    const auto care0 = errors(Method::kCare, 0.0, r);
    // Same subspace (eigenvectors of WᵀCW): float32 factors, ~1e-6.
    EXPECT_NEAR(pca.first, care0.first, 1e-5) << r;
    EXPECT_NEAR(pca.second, care0.second, 1e-5) << r;
    // Plain SVD ignores the activations: never better than care.
    const auto svd = errors(Method::kSvd, 0, r);
    EXPECT_GE(svd.first + svd.second, care0.first + care0.second - 1e-6);
  }
}

TEST(MlaLayerTest, RejectsRanksOutsideTheJointWidth) {
  LayerWeights w{Random(kD, 16, 1), Random(kD, 16, 2), {}, {}};
  MlaLayerOptions o;
  o.num_heads = 4;
  o.rope = {2, 8, 8, 1};
  o.kv_lora_rank = 33;  // > min(D = 40, 2·16 = 32)
  absl::StatusOr<MlaLayer> m = ExportLayer(w, Stats(Activations(100, 3)), o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("kv_lora_rank 33"), std::string::npos);
}

}  // namespace
}  // namespace care::convert::mla
