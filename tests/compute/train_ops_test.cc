// The training ops of backend.h (MatMulTransposeA, Axpby, SquaredDistance,
// ApplyRotary, AddColumns, CausalAttentionBackward, AdamUpdate) against
// plain host loops in double, on every backend that opens: cpu always;
// cuda when a device opens (else skipped with the reason, a failure under
// CARE_TEST_EXPECT_GPU=1, as scripts/gpu-check.sh sets).
//
// Tolerances: both backends compute these ops in fp32 (cuda's GEMMs here
// are cublasSgemm without TF32; the attention backward is fp32 SIMT), so
// O(1) values over sums of <= a few hundred terms agree with the double
// reference to ~1e-6 relative; the bounds below (1e-4 of the largest
// magnitude) leave >10x headroom, while a wrong index, sign, transpose or
// missing softmax term is off by O(0.1..1) of it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "care/compute/backend.h"
#include "compute/backend_test_util.h"

namespace care::compute {
namespace {

using testing::Host;
using testing::Random;
using Ref = std::vector<double>;

class TrainOpsTest : public testing::BackendTest {
 protected:
  // max |got − want| <= rel · max(1, max |want|).
  void ExpectNear(const Host& got, const Ref& want, double rel,
                  const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double worst = 0, scale = 1;
    for (size_t i = 0; i < got.size(); ++i) {
      worst = std::max(worst, std::abs(got[i] - want[i]));
      scale = std::max(scale, std::abs(want[i]));
    }
    EXPECT_LE(worst, rel * scale) << GetParam() << " " << what;
  }
};

TEST_P(TrainOpsTest, MatMulTransposeAPlainAndAccumulated) {
  const int64_t k = 37, n = 5, m = 6;
  const Host a = Random(k * n, 1), b = Random(k * m, 2), c0 = Random(n * m, 3);
  Ref want(n * m);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      double s = 0;
      for (int64_t r = 0; r < k; ++r) s += double{a[r * n + i]} * b[r * m + j];
      want[i * m + j] = s;
    }
  }
  Matrix c = Alloc(n, m);
  ASSERT_TRUE(be_->MatMulTransposeA(Up(a, k, n), Up(b, k, m), &c, false).ok());
  ExpectNear(Down(c), want, 1e-5, "aᵀb");
  Matrix acc = Up(c0, n, m);
  ASSERT_TRUE(be_->MatMulTransposeA(Up(a, k, n), Up(b, k, m), &acc, true).ok());
  for (int64_t i = 0; i < n * m; ++i) want[i] += c0[i];
  ExpectNear(Down(acc), want, 1e-5, "c + aᵀb");
  Matrix wrong = Alloc(m, n);
  EXPECT_EQ(
      be_->MatMulTransposeA(Up(a, k, n), Up(b, k, m), &wrong, false).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      be_->MatMulTransposeA(Up(a, k, n), Up(b, k - 1, m), &c, false).code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_P(TrainOpsTest, AxpbyAndSquaredDistance) {
  const int64_t r = 301, c = 347;  // > 1e5 elements: many blocks on cuda
  const Host x = Random(r * c, 4), y = Random(r * c, 5);
  Matrix m = Up(y, r, c);
  ASSERT_TRUE(be_->Axpby(0.5, Up(x, r, c), -2.0, &m).ok());
  Ref want(r * c);
  for (int64_t i = 0; i < r * c; ++i) want[i] = 0.5 * x[i] - 2.0 * y[i];
  ExpectNear(Down(m), want, 1e-6, "axpby");
  // beta 0: y's old contents (NaN here) are not read.
  Matrix nan = Up(Host(r * c, std::numeric_limits<float>::quiet_NaN()), r, c);
  ASSERT_TRUE(be_->Axpby(3.0, Up(x, r, c), 0.0, &nan).ok());
  for (int64_t i = 0; i < r * c; ++i) want[i] = 3.0 * x[i];
  ExpectNear(Down(nan), want, 1e-6, "axpby beta 0");
  // Aliased: y = 2y + y.
  Matrix self = Up(y, r, c);
  ASSERT_TRUE(be_->Axpby(2.0, self, 1.0, &self).ok());
  for (int64_t i = 0; i < r * c; ++i) want[i] = 3.0 * y[i];
  ExpectNear(Down(self), want, 1e-6, "axpby aliased");

  double sum = 0;
  for (int64_t i = 0; i < r * c; ++i) {
    const double d = double{x[i]} - y[i];
    sum += d * d;
  }
  absl::StatusOr<double> got = be_->SquaredDistance(Up(x, r, c), Up(y, r, c));
  ASSERT_TRUE(got.ok()) << got.status();
  // Summed in double from exact fp32 differences squared: ~1e-15.
  EXPECT_NEAR(*got, sum, 1e-12 * sum);
  absl::StatusOr<double> again = be_->SquaredDistance(Up(x, r, c), Up(y, r, c));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *got);  // deterministic
  EXPECT_EQ(be_->SquaredDistance(Up(x, r, c), Up(y, c, r)).status().code(),
            absl::StatusCode::kInvalidArgument);
  Matrix small = Alloc(1, 1);
  EXPECT_EQ(be_->Axpby(1, Up(x, r, c), 1, &small).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(TrainOpsTest, RotaryBothConventionsAndDirections) {
  // 7 rows over seq_len 3 (positions wrap), 2 heads of 6 with rotary
  // width 4 (entries 4, 5 pass through).
  const int64_t rows = 7, seq = 3, heads = 2, hd = 6, half = 2;
  Host cs(seq * half), sn(seq * half);
  for (int64_t p = 0; p < seq; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double th = (p + 1) * (0.7 + i);
      cs[p * half + i] = float(std::cos(th));
      sn[p * half + i] = float(std::sin(th));
    }
  }
  const Host x = Random(rows * heads * hd, 6);
  for (bool interleaved : {false, true}) {
    for (bool inverse : {false, true}) {
      Ref want(x.begin(), x.end());
      for (int64_t t = 0; t < rows; ++t) {
        const int64_t p = t % seq;
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t i = 0; i < half; ++i) {
            const int64_t u =
                t * heads * hd + h * hd + (interleaved ? 2 * i : i);
            const int64_t w = u + (interleaved ? 1 : half);
            const double c = cs[p * half + i];
            const double s = (inverse ? -1.0 : 1.0) * sn[p * half + i];
            want[u] = x[u] * c - x[w] * s;
            want[w] = x[w] * c + x[u] * s;
          }
        }
      }
      Matrix m = Up(x, rows, heads * hd);
      ASSERT_TRUE(be_->ApplyRotary(Up(cs, seq, half), Up(sn, seq, half), hd,
                                   {interleaved, inverse}, &m)
                      .ok());
      ExpectNear(Down(m), want, 1e-6,
                 std::string(interleaved ? "interleaved" : "half") +
                     (inverse ? " inverse" : ""));
      // The inverse undoes the rotation (it is its transpose).
      ASSERT_TRUE(be_->ApplyRotary(Up(cs, seq, half), Up(sn, seq, half), hd,
                                   {interleaved, !inverse}, &m)
                      .ok());
      ExpectNear(Down(m), Ref(x.begin(), x.end()), 1e-6, "round trip");
    }
  }
  // Forward rotate_half is ApplyRope.
  Matrix a = Up(x, rows, heads * hd), b = Up(x, rows, heads * hd);
  ASSERT_TRUE(
      be_->ApplyRope(Up(cs, seq, half), Up(sn, seq, half), hd, &a).ok());
  ASSERT_TRUE(
      be_->ApplyRotary(Up(cs, seq, half), Up(sn, seq, half), hd, {}, &b).ok());
  EXPECT_EQ(Down(a), Down(b));
  Matrix bad = Up(x, rows, heads * hd);
  EXPECT_EQ(be_->ApplyRotary(Up(cs, seq, half), Up(sn, seq, half), 5, {}, &bad)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(TrainOpsTest, AddColumnsStridedAndSummed) {
  const int64_t r = 5, heads = 3, w = 4, stride = 6;  // [nope 2 | pe 4]
  const Host src = Random(r * heads * stride, 7), d0 = Random(r * w, 8);
  // dst_stride 0: the sum of every head's pe block (k_pe's gradient).
  Matrix dst = Up(d0, r, w);
  ASSERT_TRUE(be_->AddColumns(Up(src, r, heads * stride),
                              {.groups = heads,
                               .width = w,
                               .src_col0 = 2,
                               .src_stride = stride,
                               .dst_col0 = 0,
                               .dst_stride = 0},
                              &dst)
                  .ok());
  Ref want(r * w);
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      double s = d0[i * w + j];
      for (int64_t g = 0; g < heads; ++g) {
        s += src[i * heads * stride + g * stride + 2 + j];
      }
      want[i * w + j] = s;
    }
  }
  ExpectNear(Down(dst), want, 1e-6, "summed");
  // Strided blocks: the adjoint of CopyColumns with the same blocks.
  const Host e0 = Random(r * heads * 2, 9);
  Matrix e = Up(e0, r, heads * 2);
  ASSERT_TRUE(be_->AddColumns(Up(src, r, heads * stride),
                              {.groups = heads,
                               .width = 2,
                               .src_col0 = 0,
                               .src_stride = stride,
                               .dst_col0 = 0,
                               .dst_stride = 2},
                              &e)
                  .ok());
  Ref want2(r * heads * 2);
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t g = 0; g < heads; ++g) {
      for (int64_t j = 0; j < 2; ++j) {
        want2[i * heads * 2 + g * 2 + j] =
            double{e0[i * heads * 2 + g * 2 + j]} +
            src[i * heads * stride + g * stride + j];
      }
    }
  }
  ExpectNear(Down(e), want2, 1e-6, "strided");
  // Overlapping source blocks or a destination outside are refused.
  EXPECT_EQ(
      be_->AddColumns(Up(src, r, heads * stride),
                      {.groups = heads, .width = w, .src_stride = 2}, &dst)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(be_->AddColumns(Up(src, r, heads * stride),
                            {.groups = 1, .width = w, .dst_col0 = 1}, &dst)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

double Dot(const Ref& a, const Host& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// dq, dk, dv of L = Σ d_out ⊙ attention(q, k, v) by central differences of
// the double forward: independent of the backward's formulas.
TEST_P(TrainOpsTest, AttentionBackwardMatchesFiniteDifferences) {
  const AttentionShape s{.windows = 2,
                         .seq_len = 5,
                         .heads = 4,
                         .kv_heads = 2,
                         .head_dim = 6,
                         .v_head_dim = 3,
                         .scale = 0.45};
  const int64_t n = s.windows * s.seq_len, qc = s.heads * s.head_dim,
                kc = s.kv_heads * s.head_dim, vc = s.kv_heads * 3,
                oc = s.heads * 3;
  const Host q = Random(n * qc, 10), k = Random(n * kc, 11),
             v = Random(n * vc, 12), g = Random(n * oc, 13);
  const Matrix qd = Up(q, n, qc), kd = Up(k, n, kc), vd = Up(v, n, vc);
  Matrix out = Alloc(n, oc);
  ASSERT_TRUE(be_->CausalAttention(s, qd, kd, vd, &out).ok());
  Matrix dq = Alloc(n, qc), dk = Alloc(n, kc), dv = Alloc(n, vc);
  ASSERT_TRUE(be_->CausalAttentionBackward(s, qd, kd, vd, out, Up(g, n, oc),
                                           &dq, &dk, &dv)
                  .ok());
  std::vector<double> q64(q.begin(), q.end()), k64(k.begin(), k.end()),
      v64(v.begin(), v.end());
  // Step 1e-5 in double: truncation ~h²·|L'''| ~1e-10, rounding ~1e-11/h;
  // the fp32 backend's own error (~1e-6) dominates: 1e-4 absolute on
  // gradients of O(1).
  constexpr double kH = 1e-5;
  auto fd = [&](std::vector<double>& x, size_t i) {
    const double x0 = x[i];
    x[i] = x0 + kH;
    const double plus =
        Dot(testing::ReferenceCausalAttention(s, q64, k64, v64), g);
    x[i] = x0 - kH;
    const double minus =
        Dot(testing::ReferenceCausalAttention(s, q64, k64, v64), g);
    x[i] = x0;
    return (plus - minus) / (2 * kH);
  };
  Ref want_q(q.size()), want_k(k.size()), want_v(v.size());
  for (size_t i = 0; i < q.size(); ++i) want_q[i] = fd(q64, i);
  for (size_t i = 0; i < k.size(); ++i) want_k[i] = fd(k64, i);
  for (size_t i = 0; i < v.size(); ++i) want_v[i] = fd(v64, i);
  ExpectNear(Down(dq), want_q, 1e-4, "dq");
  ExpectNear(Down(dk), want_k, 1e-4, "dk");
  ExpectNear(Down(dv), want_v, 1e-4, "dv");
}

// The heal attention's shape (one KV per query head, values narrower than
// q/k) at T = 130 (crossing the cpu's 128-query blocks) against the double
// formulas dv = Pᵀg, dS = P ⊙ (g vᵀ − rowsum(P ⊙ g vᵀ))·scale, dq = dS k,
// dk = dSᵀ q; plus a GQA case and the shape errors.
TEST_P(TrainOpsTest, AttentionBackwardLongWindowsAgainstFormulas) {
  for (const AttentionShape s : {AttentionShape{.windows = 2,
                                .seq_len = 130,
                                .heads = 3,
                                .kv_heads = 3,
                                .head_dim = 12,
                                .v_head_dim = 8,
                                .scale = 0.3},
                                 AttentionShape{.windows = 1,
                                 .seq_len = 70,
                                 .heads = 4,
                                 .kv_heads = 1,
                                 .head_dim = 8}}) {
    const int64_t T = s.seq_len, dh = s.head_dim, dvw = s.value_dim();
    const int64_t n = s.windows * T, qc = s.heads * dh, kc = s.kv_heads * dh,
                  vc = s.kv_heads * dvw, oc = s.heads * dvw,
                  group = s.heads / s.kv_heads;
    const double scale = s.scale > 0 ? s.scale : 1 / std::sqrt(double(dh));
    const Host q = Random(n * qc, 20), k = Random(n * kc, 21),
               v = Random(n * vc, 22), g = Random(n * oc, 23);
    const Matrix qd = Up(q, n, qc), kd = Up(k, n, kc), vd = Up(v, n, vc);
    Matrix out = Alloc(n, oc);
    ASSERT_TRUE(be_->CausalAttention(s, qd, kd, vd, &out).ok());
    Matrix dq = Alloc(n, qc), dk = Alloc(n, kc), dv = Alloc(n, vc);
    ASSERT_TRUE(be_->CausalAttentionBackward(s, qd, kd, vd, out, Up(g, n, oc),
                                             &dq, &dk, &dv)
                    .ok());
    Ref wq(n * qc, 0.0), wk(n * kc, 0.0), wv(n * vc, 0.0);
    for (int64_t w = 0; w < s.windows; ++w) {
      for (int64_t h = 0; h < s.heads; ++h) {
        const int64_t kh = h / group;
        for (int64_t i = 0; i < T; ++i) {
          const int64_t qi = w * T + i;
          std::vector<double> p(i + 1), dp(i + 1);
          double mx = -1e300, sum = 0, dot = 0;
          for (int64_t j = 0; j <= i; ++j) {
            double d = 0, e2 = 0;
            for (int64_t e = 0; e < dh; ++e) {
              d += double{q[qi * qc + h * dh + e]} *
                   k[(w * T + j) * kc + kh * dh + e];
            }
            for (int64_t e = 0; e < dvw; ++e) {
              e2 += double{g[qi * oc + h * dvw + e]} *
                    v[(w * T + j) * vc + kh * dvw + e];
            }
            p[j] = d * scale;
            dp[j] = e2;
            mx = std::max(mx, p[j]);
          }
          for (double& x : p) sum += x = std::exp(x - mx);
          for (int64_t j = 0; j <= i; ++j) {
            p[j] /= sum;
            dot += p[j] * dp[j];
          }
          for (int64_t j = 0; j <= i; ++j) {
            const int64_t kj = w * T + j;
            const double ds = p[j] * (dp[j] - dot) * scale;
            for (int64_t e = 0; e < dvw; ++e) {
              wv[kj * vc + kh * dvw + e] += p[j] * g[qi * oc + h * dvw + e];
            }
            for (int64_t e = 0; e < dh; ++e) {
              wq[qi * qc + h * dh + e] += ds * k[kj * kc + kh * dh + e];
              wk[kj * kc + kh * dh + e] += ds * q[qi * qc + h * dh + e];
            }
          }
        }
      }
    }
    ExpectNear(Down(dq), wq, 1e-4, "dq T=" + std::to_string(T));
    ExpectNear(Down(dk), wk, 1e-4, "dk T=" + std::to_string(T));
    ExpectNear(Down(dv), wv, 1e-4, "dv T=" + std::to_string(T));
    Matrix wrong = Alloc(n, qc + 1);
    EXPECT_EQ(be_->CausalAttentionBackward(s, qd, kd, vd, out, Up(g, n, oc),
                                           &wrong, &dk, &dv)
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST_P(TrainOpsTest, AdamUpdateTwoSteps) {
  const int64_t r = 13, c = 11;
  const Host p0 = Random(r * c, 30), g1 = Random(r * c, 31),
             g2 = Random(r * c, 32);
  Matrix p = Up(p0, r, c), m1 = Alloc(r, c), m2 = Alloc(r, c);
  ASSERT_TRUE(be_->SetZero(&m1).ok());
  ASSERT_TRUE(be_->SetZero(&m2).ok());
  Ref wp(p0.begin(), p0.end()), a1(r * c, 0.0), a2(r * c, 0.0);
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (int step = 1; step <= 2; ++step) {
    AdamStep as;
    as.lr = 0.01 * step;
    as.beta1 = b1;
    as.beta2 = b2;
    as.eps = eps;
    as.correction1 = 1 - std::pow(b1, step);
    as.correction2 = 1 - std::pow(b2, step);
    as.grad_scale = 0.5;
    const Host& g = step == 1 ? g1 : g2;
    ASSERT_TRUE(be_->AdamUpdate(Up(g, r, c), as, &p, &m1, &m2).ok());
    for (int64_t i = 0; i < r * c; ++i) {
      const double gi = 0.5 * g[i];
      a1[i] = b1 * a1[i] + (1 - b1) * gi;
      a2[i] = b2 * a2[i] + (1 - b2) * gi * gi;
      wp[i] -= as.lr * (a1[i] / as.correction1) /
               (std::sqrt(a2[i] / as.correction2) + eps);
    }
  }
  ExpectNear(Down(p), wp, 1e-5, "param");
  ExpectNear(Down(m1), a1, 1e-5, "m1");
  ExpectNear(Down(m2), a2, 1e-5, "m2");
  Matrix small = Alloc(r, c - 1);
  EXPECT_EQ(be_->AdamUpdate(Up(g1, r, c), AdamStep{}, &p, &small, &m2).code(),
            absl::StatusCode::kInvalidArgument);
  AdamStep bad;
  bad.correction1 = 0;
  EXPECT_EQ(be_->AdamUpdate(Up(g1, r, c), bad, &p, &m1, &m2).code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Devices, TrainOpsTest,
                         ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace care::compute
