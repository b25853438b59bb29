#include "compute/backend_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <utility>

#include "care/compute/registry.h"

namespace care::compute::testing {

Host Random(int64_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  Host v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<double> ReferenceCausalAttention(const AttentionShape& s,
                                             const std::vector<double>& q,
                                             const std::vector<double>& k,
                                             const std::vector<double>& v) {
  const int64_t T = s.seq_len, dh = s.head_dim, dv = s.value_dim();
  const int64_t group = s.heads / s.kv_heads;
  const double scale = s.scale > 0 ? s.scale : 1 / std::sqrt(double(dh));
  std::vector<double> o(s.windows * T * s.heads * dv, 0.0);
  for (int64_t w = 0; w < s.windows; ++w) {
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < T; ++i) {
        const int64_t qi = w * T + i;
        std::vector<double> p(i + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double d = 0;
          for (int64_t e = 0; e < dh; ++e) {
            d += q[qi * s.heads * dh + h * dh + e] *
                 k[(w * T + j) * s.kv_heads * dh + g * dh + e];
          }
          p[j] = d * scale;
          mx = std::max(mx, p[j]);
        }
        for (double& x : p) sum += x = std::exp(x - mx);
        for (int64_t e = 0; e < dv; ++e) {
          double acc = 0;
          for (int64_t j = 0; j <= i; ++j) {
            acc += p[j] / sum * v[(w * T + j) * s.kv_heads * dv + g * dv + e];
          }
          o[qi * s.heads * dv + h * dv + e] = acc;
        }
      }
    }
  }
  return o;
}

void BackendTest::SetUp() {
  auto opened = OpenBackend(GetParam());
  if (!opened.ok()) {
    const char* expect = std::getenv("CARE_TEST_EXPECT_GPU");
    if (GetParam() != "cpu" &&
        (expect == nullptr || std::string(expect) != "1")) {
      GTEST_SKIP() << "backend '" << GetParam()
                   << "' unavailable: " << opened.status();
    }
    FAIL() << opened.status();
  }
  be_ = *std::move(opened);
}

Matrix BackendTest::Up(const Host& h, int64_t rows, int64_t cols) {
  auto m = be_->Upload(h.data(), rows, cols);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

Matrix BackendTest::Alloc(int64_t rows, int64_t cols) {
  auto m = be_->Allocate(rows, cols);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

Host BackendTest::Down(const Matrix& m) {
  Host h(m.size());
  EXPECT_TRUE(be_->Download(m, h.data()).ok());
  return h;
}

}  // namespace care::compute::testing
