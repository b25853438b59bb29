// GPU-only checks of the CUDA backend beyond the backend contract test
// (tests/compute/backend_contract_test.cc): flash attention at T = 4096,
// GEMM precision classes, multi-chunk weight uploads, the router, chunked
// scoring, counters and out-of-memory errors. Skipped with a message when no
// device opens.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "care/compute/backend.h"
#include "care/compute/cuda/stats.h"
#include "cuda_test_util.h"
#include "gtest/gtest.h"

namespace care::compute {
namespace {

using testing::Down;
using testing::Random;
using testing::RoundBf16;
using testing::Up;

// softmax(q kᵀ / sqrt(d)) v for one query row, in double.
std::vector<double> AttentionRow(const AttentionShape& s,
                                 const std::vector<float>& q,
                                 const std::vector<float>& k,
                                 const std::vector<float>& v, int64_t w,
                                 int64_t t, int64_t h) {
  const int64_t d = s.head_dim, kvh = h / (s.heads / s.kv_heads);
  const int64_t qs = s.heads * d, ks = s.kv_heads * d;
  const float* qr = q.data() + (w * s.seq_len + t) * qs + h * d;
  std::vector<double> score(t + 1);
  double mx = -INFINITY;
  for (int64_t j = 0; j <= t; ++j) {
    const float* kr = k.data() + (w * s.seq_len + j) * ks + kvh * d;
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += double{qr[i]} * kr[i];
    score[j] = dot / std::sqrt(static_cast<double>(d));
    mx = std::max(mx, score[j]);
  }
  double sum = 0;
  for (double& x : score) sum += x = std::exp(x - mx);
  std::vector<double> out(d, 0.0);
  for (int64_t j = 0; j <= t; ++j) {
    const float* vr = v.data() + (w * s.seq_len + j) * ks + kvh * d;
    for (int64_t i = 0; i < d; ++i) out[i] += score[j] / sum * vr[i];
  }
  return out;
}

// Runs attention on the device and compares the listed rows (all when
// `rows` is empty). fp32 scores and an online softmax: the output is a
// convex combination of v entries in [-1, 1], so rounding stays near
// d·T·2⁻²⁴ absolute; 2e-5 leaves a margin at T = 4096.
void CheckAttention(Backend& b, const AttentionShape& s,
                    std::vector<int64_t> rows) {
  const int64_t n = s.windows * s.seq_len;
  const auto q = Random(n * s.heads * s.head_dim, 1);
  const auto k = Random(n * s.kv_heads * s.head_dim, 2);
  const auto v = Random(n * s.kv_heads * s.head_dim, 3);
  Matrix dq = Up(b, q, n, s.heads * s.head_dim);
  Matrix dk = Up(b, k, n, s.kv_heads * s.head_dim);
  Matrix dv = Up(b, v, n, s.kv_heads * s.head_dim);
  absl::StatusOr<Matrix> out = b.Allocate(n, s.heads * s.head_dim);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(b.CausalAttention(s, dq, dk, dv, &*out).ok());
  const std::vector<float> got = Down(b, *out);
  if (rows.empty()) {
    for (int64_t t = 0; t < s.seq_len; ++t) rows.push_back(t);
  }
  double worst = 0;
  for (int64_t w = 0; w < s.windows; ++w) {
    for (int64_t t : rows) {
      for (int64_t h = 0; h < s.heads; ++h) {
        const std::vector<double> want = AttentionRow(s, q, k, v, w, t, h);
        for (int64_t i = 0; i < s.head_dim; ++i) {
          const float g = got[(w * s.seq_len + t) * s.heads * s.head_dim +
                              h * s.head_dim + i];
          worst = std::max(worst, std::fabs(g - want[i]));
        }
      }
    }
  }
  EXPECT_LT(worst, 2e-5) << "windows " << s.windows << " T " << s.seq_len;
}

TEST(CudaOps, FlashAttentionAtT4096) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  const AttentionShape s{.windows = 1,
                         .seq_len = 4096,
                         .heads = 4,
                         .kv_heads = 2,
                         .head_dim = 128};
  // First rows, tile edges (32-row query tiles, 32-key tiles), last rows.
  CheckAttention(
      *b, s, {0, 1, 31, 32, 33, 63, 64, 1000, 2047, 2048, 4064, 4094, 4095});
}

TEST(CudaOps, FlashAttentionOddShapes) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  // head_dim not a multiple of 32, T not a multiple of any tile, 3 windows.
  CheckAttention(
      *b,
      {.windows = 3, .seq_len = 37, .heads = 6, .kv_heads = 3, .head_dim = 80},
      {});
  // The largest head_dim (shared memory above 48 KiB).
  CheckAttention(
      *b,
      {.windows = 1, .seq_len = 70, .heads = 2, .kv_heads = 1, .head_dim = 256},
      {});
}

// y = x·wᵀ + b with x and w rounded to bf16 by the backend: the products of
// two bf16 values are exact in fp32, so against the double product of the
// rounded inputs only fp32 accumulation error remains: ≤ in·2⁻²⁴·Σ|x w| in
// the worst case (1.2e-5·Σ|x w| at in = 200), ~√in·2⁻²⁴ typically, and
// tensor cores may align addends with truncation. 1e-4·(1 + Σ|x w|) covers
// that; a wrong layout or transposition is off by O(Σ|x w|).
TEST(CudaOps, LinearBf16AndF32) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  const int64_t n = 33, in = 200, out = 70;
  const auto x = Random(n * in, 4), w = Random(out * in, 5),
             bias = Random(out, 6), y0 = Random(n * out, 7);
  std::vector<uint16_t> wb(out * in);
  for (int64_t i = 0; i < out * in; ++i) {
    wb[i] =
        static_cast<uint16_t>(std::bit_cast<uint32_t>(RoundBf16(w[i])) >> 16);
  }
  for (DType dt : {DType::kBF16, DType::kF32}) {
    const bool bf = dt == DType::kBF16;
    absl::StatusOr<Weight> dw = b->LoadWeight(
        {.dtype = dt,
         .rows = out,
         .cols = in,
         .data = bf ? static_cast<const void*>(wb.data()) : w.data()});
    ASSERT_TRUE(dw.ok()) << dw.status();
    EXPECT_EQ(dw->dtype, dt);
    Matrix dx = Up(*b, x, n, in), db = Up(*b, bias, 1, out);
    Matrix dy = Up(*b, y0, n, out);
    ASSERT_TRUE(b->Linear(dx, *dw, &db, &dy, /*accumulate=*/true).ok());
    const std::vector<float> got = Down(*b, dy);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        double want = double{y0[r * out + o]} + bias[o], mag = 1;
        for (int64_t i = 0; i < in; ++i) {
          const double xi = bf ? RoundBf16(x[r * in + i]) : x[r * in + i];
          const double wi = bf ? RoundBf16(w[o * in + i]) : w[o * in + i];
          want += xi * wi;
          mag += std::fabs(xi * wi);
        }
        ASSERT_NEAR(got[r * out + o], want, 1e-4 * mag)
            << (bf ? "bf16" : "f32") << " row " << r << " col " << o;
      }
    }
  }
}

// A weight larger than one 32 MiB staging buffer crosses chunk boundaries;
// one-hot rows of x read single columns of w back exactly (a bf16 value
// times 1 is exact in fp32).
TEST(CudaOps, LoadWeightAcrossStagingChunks) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  const int64_t out = 4100, in = 4500;  // 36.9 MB of bf16: two chunks
  std::vector<uint16_t> w(out * in);
  for (int64_t i = 0; i < out * in; ++i) {
    w[i] = static_cast<uint16_t>(0x3f80 + (i * 2654435761u >> 20) % 127);
  }
  absl::StatusOr<Weight> dw = b->LoadWeight(
      {.dtype = DType::kBF16, .rows = out, .cols = in, .data = w.data()});
  ASSERT_TRUE(dw.ok()) << dw.status();
  const std::vector<int64_t> cols = {0, 1, 1727, 3728, in - 1};
  std::vector<float> x(cols.size() * in, 0.0f);
  for (size_t r = 0; r < cols.size(); ++r) x[r * in + cols[r]] = 1.0f;
  Matrix dx = Up(*b, x, cols.size(), in);
  absl::StatusOr<Matrix> dy = b->Allocate(cols.size(), out);
  ASSERT_TRUE(dy.ok());
  ASSERT_TRUE(b->Linear(dx, *dw, nullptr, &*dy, false).ok());
  const std::vector<float> got = Down(*b, *dy);
  for (size_t r = 0; r < cols.size(); ++r) {
    for (int64_t o = 0; o < out; ++o) {
      const float want = std::bit_cast<float>(
          static_cast<uint32_t>(w[o * in + cols[r]]) << 16);
      ASSERT_EQ(got[r * out + o], want) << "column " << cols[r] << " row " << o;
    }
  }
}

TEST(CudaOps, StatsCountUploadsFlopAndOverlap) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  absl::StatusOr<CareCudaStats> before = testing::StatsOf(b);
  ASSERT_TRUE(before.ok()) << before.status();
  const int64_t n = 64, in = 512, out = 256;
  const auto w = Random(out * in, 10);
  absl::StatusOr<Weight> dw = b->LoadWeight(
      {.dtype = DType::kF32, .rows = out, .cols = in, .data = w.data()});
  ASSERT_TRUE(dw.ok()) << dw.status();
  Matrix dx = Up(*b, Random(n * in, 11), n, in);
  absl::StatusOr<Matrix> dy = b->Allocate(n, out);
  ASSERT_TRUE(dy.ok());
  ASSERT_TRUE(b->Linear(dx, *dw, nullptr, &*dy, false).ok());
  absl::StatusOr<CareCudaStats> after = testing::StatsOf(b);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->weights_loaded - before->weights_loaded, 1);
  EXPECT_EQ(after->weight_bytes_copied - before->weight_bytes_copied,
            out * in * 4);
  EXPECT_DOUBLE_EQ(after->gemm_flop - before->gemm_flop, 2.0 * n * in * out);
  const double copy = after->copy_ms - before->copy_ms;
  const double hidden = after->copy_hidden_ms - before->copy_hidden_ms;
  const double exposed = after->copy_exposed_ms - before->copy_exposed_ms;
  EXPECT_GT(copy, 0);
  EXPECT_GE(hidden, 0);
  EXPECT_GE(exposed, 0);
  EXPECT_NEAR(hidden + exposed, copy, 1e-6 * (1 + copy));
  EXPECT_GE(after->device_bytes_peak, after->device_bytes_in_use);
  EXPECT_GE(after->device_bytes_in_use, out * in * 4 + n * (in + out) * 4);
}

TEST(CudaOps, RouterTopKMatchesTheHostRule) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  const int64_t T = 50, E = 40, k = 6;
  std::vector<float> logits = Random(T * E, 8);
  // Exact ties: the lower expert index must win.
  for (int64_t e = 0; e < E; e += 2) logits[3 * E + e] = 0.25f;
  Matrix dl = Up(*b, logits, T, E);
  for (bool renorm : {false, true}) {
    absl::StatusOr<Routing> r = b->RouteTopK(dl, k, renorm);
    ASSERT_TRUE(r.ok()) << r.status();
    for (int64_t t = 0; t < T; ++t) {
      const float* row = logits.data() + t * E;
      const double mx = *std::max_element(row, row + E);
      std::vector<double> p(E);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(row[e] - mx);
      std::vector<int64_t> order(E);
      for (int64_t e = 0; e < E; ++e) order[e] = e;
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t c) { return p[a] > p[c]; });
      double kept = 0;
      for (int64_t j = 0; j < k; ++j) kept += p[order[j]] / sum;
      for (int64_t j = 0; j < k; ++j) {
        ASSERT_EQ(r->experts[t * k + j], order[j]) << "token " << t;
        const double want = p[order[j]] / sum / (renorm ? kept : 1.0);
        EXPECT_NEAR(r->weights[t * k + j], want, 1e-6);
      }
    }
  }
}

// Chunked log-sum-exp against a double log-softmax: fp32 logits, exp in
// fp32 (relative 1e-7 each), sums in fp64: 1e-5 absolute on the NLL.
TEST(CudaOps, ScoreChunksMatchLogSoftmax) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  const int64_t S = 20, V = 1000, C = 300;
  std::vector<float> logits = Random(S * V, 9);
  for (float& x : logits) x *= 8;
  std::vector<int32_t> targets(S);
  for (int64_t s = 0; s < S; ++s) targets[s] = (s * 97) % V;
  absl::StatusOr<ScoreState> st = b->ScoreBegin(targets);
  ASSERT_TRUE(st.ok()) << st.status();
  // Rows in two blocks, vocabulary in chunks of C (last one shorter).
  for (int64_t v0 = 0; v0 < V; v0 += C) {
    const int64_t nv = std::min(C, V - v0);
    for (int64_t r0 : {int64_t{0}, int64_t{12}}) {
      const int64_t nr = r0 == 0 ? 12 : S - 12;
      std::vector<float> chunk(nr * nv);
      for (int64_t i = 0; i < nr; ++i) {
        for (int64_t j = 0; j < nv; ++j) {
          chunk[i * nv + j] = logits[(r0 + i) * V + v0 + j];
        }
      }
      Matrix dc = Up(*b, chunk, nr, nv);
      ASSERT_TRUE(b->ScoreChunk(dc, r0, v0, &*st).ok());
    }
  }
  absl::StatusOr<std::vector<double>> nll = b->ScoreFinish(*st);
  ASSERT_TRUE(nll.ok()) << nll.status();
  for (int64_t s = 0; s < S; ++s) {
    const float* row = logits.data() + s * V;
    const double mx = *std::max_element(row, row + V);
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
    EXPECT_NEAR((*nll)[s], mx + std::log(sum) - row[targets[s]], 1e-5) << s;
  }
}

TEST(CudaOps, OutOfMemoryNamesDeviceAndSize) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  // 2^40 floats = 4 TiB: more than any card.
  absl::StatusOr<Matrix> m = b->Allocate(int64_t{1} << 20, int64_t{1} << 20);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string msg(m.status().message());
  EXPECT_NE(msg.find("cuda:0: out of memory allocating 4194304.0 MiB"),
            std::string::npos)
      << msg;
  // The backend still works afterwards.
  Matrix ok = Up(*b, {1, 2, 3}, 1, 3);
  EXPECT_EQ(Down(*b, ok), (std::vector<float>{1, 2, 3}));
}

}  // namespace
}  // namespace care::compute
