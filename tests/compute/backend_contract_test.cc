// Every Backend op against plain host reference loops in double, on each
// backend that opens: "cpu" always; "cuda" when OpenBackend("cuda")
// succeeds, else the cuda cases skip with the reason (and fail instead under
// CARE_TEST_EXPECT_GPU=1, as scripts/gpu-check.sh sets).
//
// Tolerances: cpu computes in fp32 with fp64 where backend.h says so, so
// results of O(1) values over sums of <= 200 terms agree with the double
// reference to ~1e-6 relative; 1e-4 leaves >10x headroom while a wrong
// index or formula is off by O(0.1). cuda stores weights as bf16 (8-bit
// mantissa, relative rounding 2^-9 ≈ 2e-3) and may run GEMMs in TF32 (10-bit
// mantissa): the GEMM references use the weights the backend actually holds
// (rounded to bf16 when w.dtype is kBF16), leaving the activation rounding,
// ~2e-3 relative per term, ~3e-2 absolute on sums of 64 O(1) terms; 5e-2.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "care/compute/backend.h"
#include "compute/backend_test_util.h"

namespace care::compute {
namespace {

using testing::Host;
using testing::Random;

float Bf16Round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7FFF + ((u >> 16) & 1);  // round to nearest even
  u &= 0xFFFF0000u;
  std::memcpy(&x, &u, 4);
  return x;
}

uint16_t Bf16Bits(float x) {
  x = Bf16Round(x);
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<uint16_t>(u >> 16);
}

class BackendContractTest : public testing::BackendTest {
 protected:
  void SetUp() override {
    testing::BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    cpu_ = be_->kind() == DeviceKind::kCpu;
  }

  double GemmTol() const { return cpu_ ? 1e-4 : 5e-2; }
  double Tol() const { return cpu_ ? 1e-4 : 1e-3; }

  Weight LoadF32(const Host& h, int64_t rows, int64_t cols) {
    auto w = be_->LoadWeight(
        {.dtype = DType::kF32, .rows = rows, .cols = cols, .data = h.data()});
    EXPECT_TRUE(w.ok()) << w.status();
    return *std::move(w);
  }
  // The values the backend holds for a weight loaded from fp32 `h`.
  Host Held(const Weight& w, Host h) const {
    if (w.dtype == DType::kBF16) {
      for (float& x : h) x = Bf16Round(x);
    }
    return h;
  }
  void ExpectNear(const Host& got, const std::vector<double>& want,
                  double tol) {
    ASSERT_EQ(got.size(), want.size());
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
      worst = std::max(worst, std::abs(got[i] - want[i]));
    }
    EXPECT_LE(worst, tol) << GetParam();
  }

  void LinearCase(int64_t n);  // LinearBiasAccumulate with n rows

  bool cpu_ = true;
};

TEST_P(BackendContractTest, MemoryRoundTripViewsCopyZero) {
  const Host h = Random(6 * 5, 1);
  Matrix m = Up(h, 6, 5);
  EXPECT_EQ(Down(m), h);
  const Matrix view = RowsView(m, 2, 3);  // rows 2..4
  EXPECT_EQ(view.rows, 3);
  EXPECT_EQ(Down(view), Host(h.begin() + 10, h.begin() + 25));
  Matrix dst = Alloc(3, 5);
  ASSERT_TRUE(be_->Copy(view, &dst).ok());
  EXPECT_EQ(Down(dst), Down(view));
  ASSERT_TRUE(be_->SetZero(&dst).ok());
  EXPECT_EQ(Down(dst), Host(15, 0.0f));
  Matrix wrong = Alloc(2, 5);
  EXPECT_EQ(be_->Copy(view, &wrong).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Alloc(0, 7).empty());
  EXPECT_EQ(be_->Allocate(-1, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendContractTest, LoadWeightConvertsBf16F16F32) {
  // Values exact in bf16 and f16: 1.5, -2.25, 0.125, 3.0 (bf16 bits
  // 0x3FC0, 0xC010, 0x3E00, 0x4040; f16 bits 0x3E00, 0xC080, 0x3000,
  // 0x4200). y = x · wᵀ with x = identity rows reads w back.
  const uint16_t bf16[] = {0x3FC0, 0xC010, 0x3E00, 0x4040};
  const uint16_t f16[] = {0x3E00, 0xC080, 0x3000, 0x4200};
  const Host f32 = {1.5f, -2.25f, 0.125f, 3.0f};
  const Host eye = {1, 0, 0, 1};
  const Matrix x = Up(eye, 2, 2);
  const std::vector<double> want = {1.5, 0.125, -2.25, 3.0};  // wᵀ
  for (auto [dtype, data] : {std::pair<DType, const void*>{DType::kBF16, bf16},
                             {DType::kF16, f16},
                             {DType::kF32, f32.data()}}) {
    auto w =
        be_->LoadWeight({.dtype = dtype, .rows = 2, .cols = 2, .data = data});
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->rows, 2);
    Matrix y = Alloc(2, 2);
    ASSERT_TRUE(be_->Linear(x, *w, nullptr, &y, false).ok());
    ExpectNear(Down(y), want, 0.0);
  }
  EXPECT_EQ(
      be_->LoadWeight(
             {.dtype = DType::kF32, .rows = 0, .cols = 2, .data = f32.data()})
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Bf16Bits(1.5f), 0x3FC0);
}

TEST_P(BackendContractTest, LoadWeightConvertsLargeTensorsWhole) {
  // 1031 x 509 = 524,779 elements: the cpu backend converts in parallel
  // chunks of 2^18 elements, so this is two full chunks and a ragged tail
  // (not a multiple of the 16-element vector step). y = I · wᵀ reads every
  // element back; the identity product is exact in fp32 and TF32 for
  // bf16-representable weights, so any skipped, shifted or doubly converted
  // chunk shows as a mismatch.
  const int64_t rows = 1031, cols = 509, n = rows * cols;
  const Host values = Random(n, 7);
  std::vector<uint16_t> bf16(n);
  Host as_bf16(n);
  for (int64_t i = 0; i < n; ++i) {
    bf16[i] = Bf16Bits(values[i]);
    as_bf16[i] = Bf16Round(values[i]);
  }
  Host eye(cols * cols, 0.0f);
  for (int64_t c = 0; c < cols; ++c) eye[c * cols + c] = 1.0f;
  const Matrix x = Up(eye, cols, cols);
  for (auto [dtype, data, held] : {std::tuple<DType, const void*, const Host*>{
                                       DType::kBF16, bf16.data(), &as_bf16},
                                   {DType::kF32, as_bf16.data(), &as_bf16}}) {
    auto w = be_->LoadWeight(
        {.dtype = dtype, .rows = rows, .cols = cols, .data = data});
    ASSERT_TRUE(w.ok()) << w.status();
    Matrix y = Alloc(cols, rows);  // [cols, rows] = wᵀ
    ASSERT_TRUE(be_->Linear(x, *w, nullptr, &y, false).ok());
    const Host got = Down(y);
    int64_t wrong = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        wrong += got[c * rows + r] != (*held)[r * cols + c];
      }
    }
    EXPECT_EQ(wrong, 0) << GetParam() << " dtype " << static_cast<int>(dtype);
  }
}

TEST_P(BackendContractTest, LinearBiasAccumulate) {
  // 1029 rows: the cpu backend splits >= 2 x 256 rows across its threads
  // (uneven blocks of whole 8-row groups); 7 rows run as one GEMM.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(std::max(2, threads));
  for (const int64_t n : {int64_t{7}, int64_t{1029}}) {
    SCOPED_TRACE(n);
    LinearCase(n);
  }
  omp_set_num_threads(threads);
}

void BackendContractTest::LinearCase(int64_t n) {
  const int64_t in = 64, out = 9;
  const Host xh = Random(n * in, 2), wh = Random(out * in, 3, 0.2f);
  const Host bh = Random(out, 4), y0 = Random(n * out, 5);
  const Matrix x = Up(xh, n, in), b = Up(bh, 1, out);
  const Weight w = LoadF32(wh, out, in);
  const Host wv = Held(w, wh);
  for (bool accumulate : {false, true}) {
    for (bool bias : {false, true}) {
      Matrix y = Up(y0, n, out);
      ASSERT_TRUE(be_->Linear(x, w, bias ? &b : nullptr, &y, accumulate).ok());
      std::vector<double> want(n * out);
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t o = 0; o < out; ++o) {
          double s = accumulate ? y0[r * out + o] : 0.0;
          for (int64_t i = 0; i < in; ++i) {
            s += double{xh[r * in + i]} * wv[o * in + i];
          }
          want[r * out + o] = s + (bias ? bh[o] : 0.0);
        }
      }
      ExpectNear(Down(y), want, GemmTol());
    }
  }
  Matrix bad = Alloc(n, out + 1);
  EXPECT_EQ(be_->Linear(x, w, nullptr, &bad, false).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendContractTest, MatMulPlainAndTransposed) {
  const int64_t n = 5, k = 12, m = 6;
  const Host ah = Random(n * k, 6), bh = Random(k * m, 7);
  const Matrix a = Up(ah, n, k), b = Up(bh, k, m), bt = Up(bh, m, k);
  for (bool transpose : {false, true}) {
    Matrix c = Alloc(n, m);
    ASSERT_TRUE(be_->MatMul(a, transpose ? bt : b, transpose, &c, false).ok());
    std::vector<double> want(n * m);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < m; ++j) {
        double s = 0.0;
        for (int64_t i = 0; i < k; ++i) {
          s += double{ah[r * k + i]} *
               (transpose ? bh[j * k + i] : bh[i * m + j]);
        }
        want[r * m + j] = s;
      }
    }
    ExpectNear(Down(c), want, GemmTol() / 5);
  }
}

TEST_P(BackendContractTest, RmsNormRowsGroupsAliased) {
  const int64_t rows = 4, n = 24, width = 8;
  const double eps = 1e-5;
  const Host xh = Random(rows * n, 8, 3.0f), wh = Random(n, 9);
  const Host gw = Random(width, 10);
  auto norm = [&](const float* x, const float* w, int64_t len, double* out) {
    double ss = 0.0;
    for (int64_t i = 0; i < len; ++i) ss += double{x[i]} * x[i];
    const double s = 1.0 / std::sqrt(ss / len + eps);
    for (int64_t i = 0; i < len; ++i) out[i] = x[i] * s * w[i];
  };
  std::vector<double> want(rows * n), want_groups(rows * n);
  for (int64_t r = 0; r < rows; ++r) {
    norm(&xh[r * n], wh.data(), n, &want[r * n]);
    for (int64_t g = 0; g < n / width; ++g) {
      norm(&xh[r * n + g * width], gw.data(), width,
           &want_groups[r * n + g * width]);
    }
  }
  const Matrix x = Up(xh, rows, n), w = Up(wh, 1, n);
  Matrix y = Alloc(rows, n);
  ASSERT_TRUE(be_->RmsNorm(x, w, eps, &y).ok());
  ExpectNear(Down(y), want, Tol());
  Matrix inplace = Up(xh, rows, n);
  ASSERT_TRUE(be_->RmsNorm(inplace, w, eps, &inplace).ok());
  ExpectNear(Down(inplace), want, Tol());
  Matrix groups = Up(xh, rows, n);
  ASSERT_TRUE(be_->RmsNormGroups(Up(gw, 1, width), eps, width, &groups).ok());
  ExpectNear(Down(groups), want_groups, Tol());
  EXPECT_EQ(be_->RmsNormGroups(Up(gw, 1, width), eps, 7, &groups).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendContractTest, RopeRotatesPairsPartialAndPositionsModSeqLen) {
  // 2 windows of T = 3, 2 heads of d_h = 6 with rotary width 4: entries 4, 5
  // of each head pass through.
  const int64_t T = 3, rows = 2 * T, dh = 6, half = 2, cols = 2 * dh;
  const Host xh = Random(rows * cols, 11);
  Host ch(T * half), sh(T * half);
  for (int64_t p = 0; p < T; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      ch[p * half + i] = std::cos(0.3 * p * (i + 1));
      sh[p * half + i] = std::sin(0.3 * p * (i + 1));
    }
  }
  std::vector<double> want(xh.begin(), xh.end());
  for (int64_t t = 0; t < rows; ++t) {
    const int64_t p = t % T;
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = t * cols + h * dh + i, b = a + half;
        want[a] = xh[a] * ch[p * half + i] - xh[b] * sh[p * half + i];
        want[b] = xh[b] * ch[p * half + i] + xh[a] * sh[p * half + i];
      }
    }
  }
  Matrix x = Up(xh, rows, cols);
  ASSERT_TRUE(be_->ApplyRope(Up(ch, T, half), Up(sh, T, half), dh, &x).ok());
  ExpectNear(Down(x), want, Tol());
}

TEST_P(BackendContractTest, SiluMulAddAddRow) {
  const int64_t r = 3, c = 10;
  const Host g = Random(r * c, 12, 3.0f), u = Random(r * c, 13);
  const Host b = Random(c, 14);
  Matrix gate = Up(g, r, c);
  ASSERT_TRUE(be_->SiluMul(Up(u, r, c), &gate).ok());
  std::vector<double> want(r * c);
  for (int64_t i = 0; i < r * c; ++i) {
    want[i] = g[i] / (1.0 + std::exp(-double{g[i]})) * u[i];
  }
  ExpectNear(Down(gate), want, Tol());
  Matrix y = Up(u, r, c);
  ASSERT_TRUE(be_->Add(Up(g, r, c), &y).ok());
  ASSERT_TRUE(be_->AddRow(Up(b, 1, c), &y).ok());
  for (int64_t i = 0; i < r * c; ++i) want[i] = double{u[i]} + g[i] + b[i % c];
  ExpectNear(Down(y), want, Tol());
}

TEST_P(BackendContractTest, CausalAttentionGqaWindowsAndLongBlocks) {
  // T = 130 crosses the CPU's 128-query blocks; 2 windows must not see each
  // other; 4 query heads read 2 KV heads.
  const AttentionShape s{
      .windows = 2, .seq_len = 130, .heads = 4, .kv_heads = 2, .head_dim = 8};
  const int64_t n = s.windows * s.seq_len, qc = s.heads * s.head_dim,
                kc = s.kv_heads * s.head_dim;
  const Host qh = Random(n * qc, 15), kh = Random(n * kc, 16),
             vh = Random(n * kc, 17);
  Matrix out = Alloc(n, qc);
  ASSERT_TRUE(
      be_->CausalAttention(s, Up(qh, n, qc), Up(kh, n, kc), Up(vh, n, kc), &out)
          .ok());
  const std::vector<double> want = testing::ReferenceCausalAttention(
      s, {qh.begin(), qh.end()}, {kh.begin(), kh.end()},
      {vh.begin(), vh.end()});
  ExpectNear(Down(out), want, cpu_ ? 1e-4 : 2e-2);
}

TEST_P(BackendContractTest, CausalAttentionValueDimAndScale) {
  // Multi-head latent attention's shape: values narrower than q/k heads and
  // an explicit softmax scale; T = 130 again crosses the 128-query blocks.
  const AttentionShape s{.windows = 2,
                         .seq_len = 130,
                         .heads = 3,
                         .kv_heads = 3,
                         .head_dim = 12,
                         .v_head_dim = 5,
                         .scale = 0.37};
  const int64_t n = s.windows * s.seq_len, qc = s.heads * s.head_dim,
                vc = s.heads * s.v_head_dim;
  const Host qh = Random(n * qc, 31), kh = Random(n * qc, 32),
             vh = Random(n * vc, 33);
  Matrix out = Alloc(n, vc);
  ASSERT_TRUE(
      be_->CausalAttention(s, Up(qh, n, qc), Up(kh, n, qc), Up(vh, n, vc), &out)
          .ok());
  const std::vector<double> want = testing::ReferenceCausalAttention(
      s, {qh.begin(), qh.end()}, {kh.begin(), kh.end()},
      {vh.begin(), vh.end()});
  ExpectNear(Down(out), want, cpu_ ? 1e-4 : 2e-2);
  // out must have the value width.
  Matrix wrong = Alloc(n, qc);
  EXPECT_EQ(be_->CausalAttention(s, Up(qh, n, qc), Up(kh, n, qc), Up(vh, n, vc),
                                 &wrong)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendContractTest, CopyColumnsStridedBlocksAndBroadcast) {
  const int64_t R = 3, SC = 10, DC = 12;
  const Host sh = Random(R * SC, 34);
  const Matrix src = Up(sh, R, SC);
  const Host base = Random(R * DC, 35);
  Matrix dst = Up(base, R, DC);
  // 3 blocks of 2 columns from 1, 4, 7 to 0, 4, 8.
  ASSERT_TRUE(be_->CopyColumns(src,
                               {.groups = 3,
                                .width = 2,
                                .src_col0 = 1,
                                .src_stride = 3,
                                .dst_col0 = 0,
                                .dst_stride = 4},
                               &dst)
                  .ok());
  // Columns 8..9 of src repeated into columns 2..3, 6..7, 10..11.
  ASSERT_TRUE(be_->CopyColumns(src,
                               {.groups = 3,
                                .width = 2,
                                .src_col0 = 8,
                                .src_stride = 0,
                                .dst_col0 = 2,
                                .dst_stride = 4},
                               &dst)
                  .ok());
  std::vector<double> want(R * DC);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t g = 0; g < 3; ++g) {
      for (int64_t j = 0; j < 2; ++j) {
        want[r * DC + g * 4 + j] = sh[r * SC + 1 + g * 3 + j];
        want[r * DC + g * 4 + 2 + j] = sh[r * SC + 8 + j];
      }
    }
  }
  ExpectNear(Down(dst), want, 0.0);
  // Out of range, overlapping destination blocks, row mismatch.
  EXPECT_EQ(
      be_->CopyColumns(src, {.groups = 1, .width = 4, .src_col0 = 7}, &dst)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      be_->CopyColumns(src, {.groups = 2, .width = 3, .dst_stride = 2}, &dst)
          .code(),
      absl::StatusCode::kInvalidArgument);
  Matrix short_dst = Alloc(2, DC);
  EXPECT_EQ(be_->CopyColumns(src, {.groups = 1, .width = 1}, &short_dst).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendContractTest, RouteGroupedTopKSigmoidGroupsBiasAndMask) {
  // 8 experts in 4 groups of 2, 2 groups kept, top 2, scale 2.5.
  const Host logits = {3, -3, 2, 2, -1, 0,  4, -3.5f,  // token 0
                       3, -3, 2, 2, -1, 0,  4, -3.5f,  // token 1
                       0, 0,  1, 1, -1, -1, 2, 2};     // token 2
  const Host bias = {0,  0,  0,  0,    0,  0,  0,  0,  //
                     0,  0,  0,  0.5f, 0,  0,  -2, 0,
                     -2, -2, -2, -2,   -2, -2, -2, -2};
  auto sig = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  const GroupedTopK r{
      .k = 2, .groups = 4, .topk_groups = 2, .renormalize = true, .scale = 2.5};
  struct Case {
    int64_t token;
    std::vector<int32_t> experts;
  };
  // Token 0: groups {2,3} (1.76) and {6,7} (1.01) win over {0,1} (1.00);
  // expert 6 first, then 2 over 3 (tie: lower index).
  // Token 1: the bias lifts 3 and sinks 6: groups {2,3} and {0,1}; 3 then 0
  // by corrected score, weighted by their uncorrected sigmoids.
  // Token 2: every corrected score is negative, so the experts of the
  // dropped groups (masked to 0, as transformers) win: 0 and 1.
  const std::vector<Case> cases = {{0, {6, 2}}, {1, {3, 0}}, {2, {0, 1}}};
  for (const Case& c : cases) {
    const Matrix l =
        Up(Host(logits.begin() + c.token * 8, logits.begin() + c.token * 8 + 8),
           1, 8);
    const Matrix b = Up(
        Host(bias.begin() + c.token * 8, bias.begin() + c.token * 8 + 8), 1, 8);
    auto got = be_->RouteGroupedTopK(l, b, r);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->experts, c.experts) << "token " << c.token;
    double sum = 0;
    for (int32_t e : c.experts) sum += sig(logits[c.token * 8 + e]);
    for (int64_t j = 0; j < 2; ++j) {
      EXPECT_NEAR(got->weights[j],
                  2.5 * sig(logits[c.token * 8 + c.experts[j]]) / sum, 1e-6);
    }
  }
  // Without renormalization the weights are the scaled sigmoids.
  GroupedTopK plain = r;
  plain.renormalize = false;
  auto got =
      be_->RouteGroupedTopK(Up(Host(logits.begin(), logits.begin() + 8), 1, 8),
                            Up(Host(8, 0.0f), 1, 8), plain);
  ASSERT_TRUE(got.ok());
  EXPECT_NEAR(got->weights[0], 2.5 * sig(4.0), 1e-6);
  // Groups of one expert cannot be scored by their best two.
  GroupedTopK bad = r;
  bad.groups = 8;
  EXPECT_EQ(be_->RouteGroupedTopK(Up(Host(8, 0.0f), 1, 8),
                                  Up(Host(8, 0.0f), 1, 8), bad)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      be_->RouteGroupedTopK(Up(Host(8, 0.0f), 1, 8), Up(Host(7, 0.0f), 1, 7), r)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendContractTest, RouteTopKSoftmaxTiesRenormalize) {
  // Token 0: experts 1 and 3 tie at the top: the lower index comes first.
  const Host logits = {0.0f, 2.0f, -1.0f, 2.0f,  //
                       1.0f, 0.5f, 3.0f,  -2.0f};
  const Matrix l = Up(logits, 2, 4);
  for (bool renorm : {false, true}) {
    auto r = be_->RouteTopK(l, 2, renorm);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->experts, (std::vector<int32_t>{1, 3, 2, 0}));
    for (int64_t t = 0; t < 2; ++t) {
      double z = 0.0;
      for (int64_t e = 0; e < 4; ++e) z += std::exp(double{logits[t * 4 + e]});
      double kept = 0.0;
      for (int64_t j = 0; j < 2; ++j) {
        kept += std::exp(double{logits[t * 4 + r->experts[t * 2 + j]]}) / z;
      }
      for (int64_t j = 0; j < 2; ++j) {
        const double p =
            std::exp(double{logits[t * 4 + r->experts[t * 2 + j]]}) / z;
        EXPECT_NEAR(r->weights[t * 2 + j], renorm ? p / kept : p, 1e-6);
      }
    }
  }
  EXPECT_EQ(be_->RouteTopK(l, 5, true).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendContractTest, GatherScatterSumRowGroups) {
  const int64_t C = 5;
  const Host xh = Random(4 * C, 18);
  const Matrix x = Up(xh, 4, C);
  Matrix g = Alloc(3, C);
  ASSERT_TRUE(be_->GatherRows(x, {3, 0, 3}, &g).ok());
  const Host gh = Down(g);
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(gh[0 * C + c], xh[3 * C + c]);
    EXPECT_EQ(gh[1 * C + c], xh[0 * C + c]);
    EXPECT_EQ(gh[2 * C + c], xh[3 * C + c]);
  }
  EXPECT_EQ(be_->GatherRows(x, {4}, &g).code(),
            absl::StatusCode::kInvalidArgument);
  // Scatter 3 rows into 6 with scales, then accumulate once more unscaled.
  const Host base = Random(6 * C, 19);
  Matrix out = Up(base, 6, C);
  const Matrix src = RowsView(x, 0, 3);
  ASSERT_TRUE(
      be_->ScatterRows(src, {5, 1, 2}, {2.0f, -1.0f, 0.5f}, &out, false).ok());
  ASSERT_TRUE(be_->ScatterRows(src, {0, 1, 4}, {}, &out, true).ok());
  std::vector<double> want(base.begin(), base.end());
  const int64_t ids1[] = {5, 1, 2}, ids2[] = {0, 1, 4};
  const double sc[] = {2.0, -1.0, 0.5};
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t c = 0; c < C; ++c)
      want[ids1[i] * C + c] = sc[i] * xh[i * C + c];
  }
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t c = 0; c < C; ++c) want[ids2[i] * C + c] += xh[i * C + c];
  }
  ExpectNear(Down(out), want, 1e-6);
  // y.row(t) = Σ_j out.row(t*3 + j) for T = 2, k = 3.
  Matrix y = Alloc(2, C);
  ASSERT_TRUE(be_->SumRowGroups(out, 3, &y).ok());
  const Host oh = Down(out);
  std::vector<double> sums(2 * C, 0.0);
  for (int64_t t = 0; t < 2; ++t) {
    for (int64_t j = 0; j < 3; ++j) {
      for (int64_t c = 0; c < C; ++c)
        sums[t * C + c] += oh[(t * 3 + j) * C + c];
    }
  }
  ExpectNear(Down(y), sums, 1e-5);
}

TEST_P(BackendContractTest, ScoreChunksEqualLogSoftmax) {
  const int64_t S = 5, V = 23;
  const Host lh = Random(S * V, 20, 4.0f);
  const std::vector<int32_t> targets = {0, 22, 7, 8, 15};
  auto state = be_->ScoreBegin(targets);
  ASSERT_TRUE(state.ok());
  // Vocabulary chunks of 10, 10, 3; rows in blocks of 3 and 2.
  for (int64_t v0 = 0; v0 < V; v0 += 10) {
    const int64_t nv = std::min<int64_t>(10, V - v0);
    for (int64_t r0 : {0, 3}) {
      const int64_t nr = r0 == 0 ? 3 : 2;
      Host chunk(nr * nv);
      for (int64_t r = 0; r < nr; ++r) {
        for (int64_t j = 0; j < nv; ++j) {
          chunk[r * nv + j] = lh[(r0 + r) * V + v0 + j];
        }
      }
      ASSERT_TRUE(be_->ScoreChunk(Up(chunk, nr, nv), r0, v0, &*state).ok());
    }
  }
  auto nll = be_->ScoreFinish(*state);
  ASSERT_TRUE(nll.ok());
  ASSERT_EQ(nll->size(), 5u);
  for (int64_t s = 0; s < S; ++s) {
    double mx = -1e300, z = 0.0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double{lh[s * V + j]});
    for (int64_t j = 0; j < V; ++j) z += std::exp(lh[s * V + j] - mx);
    EXPECT_NEAR((*nll)[s], mx + std::log(z) - lh[s * V + targets[s]], 1e-5);
  }
  EXPECT_FALSE(be_->ScoreBegin({-1}).ok());
}

TEST_P(BackendContractTest, GramSumsBlocksInFp64AndRejectsNan) {
  // 600 rows cross the 256-row fp32 blocks; D = 130 crosses 128-col tiles.
  const int64_t n = 600, D = 130;
  const Host xh = Random(n * D, 21);
  auto g = be_->NewGram(D);
  ASSERT_TRUE(g.ok());
  const Matrix x = Up(xh, n, D);
  ASSERT_TRUE(be_->GramAdd(RowsView(x, 0, 100), &*g).ok());
  ASSERT_TRUE(be_->GramAdd(RowsView(x, 100, 500), &*g).ok());
  auto host = be_->GramDownload(*g);
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->tokens, n);
  double worst = 0.0, worst_abs = 0.0;
  for (int64_t i = 0; i < D; ++i) {
    double a = 0.0;
    for (int64_t r = 0; r < n; ++r) a += std::abs(double{xh[r * D + i]});
    worst_abs = std::max(worst_abs, std::abs(host->abs_sum[i] - a));
    for (int64_t j = 0; j < D; ++j) {
      double s = 0.0;
      for (int64_t r = 0; r < n; ++r) {
        s += double{xh[r * D + i]} * xh[r * D + j];
      }
      worst = std::max(worst, std::abs(host->sum(i, j) - s));
    }
  }
  // fp32 partial sums of <= 256 products of N(0,1) values (~16 in size):
  // ~256·2⁻²⁴·16 worst case per block, three blocks.
  EXPECT_LE(worst, 1e-2);
  EXPECT_LE(worst_abs, 1e-2);
  Host bad = xh;
  bad[7] = NAN;
  EXPECT_EQ(be_->GramAdd(Up(bad, n, D), &*g).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(be_->GramAdd(Alloc(3, D + 1), &*g).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g->tokens, n);
}

TEST_P(BackendContractTest, SymmetricEigenAndSvdReconstruct) {
  const int64_t n = 12;
  const Host r = Random(n * n, 22);
  Eigen::MatrixXd a(n, n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) a(i, j) = r[i * n + j];
  }
  const Eigen::MatrixXd sym = a * a.transpose();
  auto eig = be_->SymmetricEigen(sym);
  ASSERT_TRUE(eig.ok());
  for (int64_t i = 1; i < n; ++i) {
    EXPECT_LE(eig->values[i - 1], eig->values[i]);
  }
  const Eigen::MatrixXd back =
      eig->vectors * eig->values.asDiagonal() * eig->vectors.transpose();
  EXPECT_LE((back - sym).cwiseAbs().maxCoeff(), 1e-9 * sym.norm());
  const Eigen::MatrixXd tall = a.topRows(n).leftCols(7);  // [12, 7]
  auto svd = be_->Svd(tall, true, true);
  ASSERT_TRUE(svd.ok());
  ASSERT_EQ(svd->values.size(), 7);
  for (int64_t i = 1; i < 7; ++i) EXPECT_GE(svd->values[i - 1], svd->values[i]);
  const Eigen::MatrixXd rec =
      svd->u * svd->values.asDiagonal() * svd->v.transpose();
  EXPECT_LE((rec - tall).cwiseAbs().maxCoeff(), 1e-9 * tall.norm());
  auto values_only = be_->Svd(tall, false, false);
  ASSERT_TRUE(values_only.ok());
  EXPECT_EQ(values_only->u.size(), 0);
  EXPECT_LE((values_only->values - svd->values).cwiseAbs().maxCoeff(), 1e-9);
  EXPECT_FALSE(be_->SymmetricEigen(tall).ok());
}

TEST_P(BackendContractTest, ForEachRunsEveryIndexAndReportsLowestError) {
  const int64_t n = 9, C = 16;
  Matrix out = Alloc(n, C);
  const Host xh = Random(n * C, 23);
  const Matrix x = Up(xh, n, C);
  // Each index copies its own row through ops (disjoint outputs).
  ASSERT_TRUE(be_->ForEach(n,
                           [&](int64_t i) -> absl::Status {
                             Matrix dst = RowsView(out, i, 1);
                             return be_->Copy(RowsView(x, i, 1), &dst);
                           })
                  .ok());
  EXPECT_EQ(Down(out), xh);
  const absl::Status st = be_->ForEach(n, [](int64_t i) -> absl::Status {
    if (i == 4 || i == 7) return absl::InternalError(std::to_string(i));
    return absl::OkStatus();
  });
  EXPECT_EQ(st.message(), "4");
}

INSTANTIATE_TEST_SUITE_P(Devices, BackendContractTest,
                         ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace care::compute
