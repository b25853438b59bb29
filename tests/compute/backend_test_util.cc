#include "compute/backend_test_util.h"

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
