#include "cuda_test_util.h"

#include <dlfcn.h>

#include <cstdlib>
#include <random>

#include "care/compute/cuda/bf16.h"
#include "care/compute/registry.h"

namespace care::compute::testing {

bool GpuExpected() {
  const char* v = std::getenv("CARE_TEST_EXPECT_GPU");
  return v != nullptr && std::string(v) == "1";
}

Backend* CudaOrNull(std::string* why) {
  absl::StatusOr<Backend*> b = SharedBackend("cuda");
  if (!b.ok()) {
    *why = std::string(b.status().message());
    return nullptr;
  }
  return *b;
}

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

float RoundBf16(float x) { return cuda::Bf16BitsToF32(cuda::F32ToBf16Bits(x)); }

absl::StatusOr<CareCudaStats> StatsOf(Backend* b) {
  void* handle = dlopen(CARE_CUDA_PLUGIN_PATH, RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) {
    return absl::FailedPreconditionError("the CUDA plugin is not loaded");
  }
  auto fn = reinterpret_cast<CareCudaStatsFn>(
      dlsym(handle, kCareCudaStatsEntryPoint));
  if (fn == nullptr) return absl::NotFoundError("no stats entry point");
  CareCudaStats s{};
  const int rc = fn(b, &s);
  if (rc != 0) {
    return absl::InternalError("CareCudaBackendStats returned " +
                               std::to_string(rc));
  }
  return s;
}

Matrix Up(Backend& b, const std::vector<float>& host, int64_t rows,
          int64_t cols) {
  absl::StatusOr<Matrix> m = b.Upload(host.data(), rows, cols);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : Matrix{};
}

std::vector<float> Down(Backend& b, const Matrix& m) {
  std::vector<float> host(m.size());
  const absl::Status st = b.Download(m, host.data());
  EXPECT_TRUE(st.ok()) << st;
  return host;
}

}  // namespace care::compute::testing
