// The plugin's C entry points, found with dlsym() by compute/registry.cc
// (CareCudaBackendAbiVersion, CareCudaBackendCreate) and by bench/gpu
// (CareCudaBackendStats). No C++ exception crosses them.
#include <exception>
#include <string>

#include "care/compute/cuda/cuda_backend.h"
#include "care/compute/cuda/stats.h"
#include "care/compute/registry.h"

#define CARE_EXPORT extern "C" __attribute__((visibility("default")))

// The kBackendAbiVersion this plugin was compiled with (registry.h).
CARE_EXPORT int CareCudaBackendAbiVersion() {
  return care::compute::kBackendAbiVersion;
}

CARE_EXPORT care::compute::Backend* CareCudaBackendCreate(int ordinal,
                                                          std::string* error) {
  try {
    absl::StatusOr<std::shared_ptr<care::compute::cuda::Context>> ctx =
        care::compute::cuda::Context::Open(ordinal);
    if (!ctx.ok()) {
      if (error != nullptr) *error = std::string(ctx.status().message());
      return nullptr;
    }
    return new care::compute::cuda::CudaBackend(*std::move(ctx));
  } catch (const std::exception& e) {
    if (error != nullptr) {
      *error = std::string("cuda:") + std::to_string(ordinal) +
               ": backend creation failed: " + e.what();
    }
    return nullptr;
  }
}

CARE_EXPORT int CareCudaBackendStats(care::compute::Backend* backend,
                                     CareCudaStats* out) {
  if (backend == nullptr || out == nullptr ||
      backend->kind() != care::compute::DeviceKind::kCuda) {
    return -1;
  }
  try {
    auto* cuda = static_cast<care::compute::cuda::CudaBackend*>(backend);
    absl::StatusOr<CareCudaStats> st = cuda->context().Stats();
    if (!st.ok()) return -2;
    *out = *st;
    return 0;
  } catch (const std::exception&) {
    return -2;
  }
}

CARE_EXPORT int CareCudaBackendResetPeak(care::compute::Backend* backend) {
  if (backend == nullptr ||
      backend->kind() != care::compute::DeviceKind::kCuda) {
    return -1;
  }
  static_cast<care::compute::cuda::CudaBackend*>(backend)
      ->context()
      .ResetPeak();
  return 0;
}
