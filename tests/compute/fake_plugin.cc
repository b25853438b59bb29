// A stand-in for libcare_cuda_backend.so in the registry test: exports the
// plugin's C entry points without CUDA. FAKE_ABI_VERSION (when defined) is
// the version it claims; without it the ABI entry point is missing, as in a
// plugin built before versioning. Its create never makes a backend, so a
// test sees whether the registry got as far as calling it.
#include <string>

#include "care/compute/backend.h"
#include "care/compute/registry.h"

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

#ifdef FAKE_ABI_VERSION
FAKE_EXPORT int CareCudaBackendAbiVersion() { return FAKE_ABI_VERSION; }
#endif

FAKE_EXPORT care::compute::Backend* CareCudaBackendCreate(int ordinal,
                                                          std::string* error) {
  if (error != nullptr) {
    *error =
        "fake plugin: create called for ordinal " + std::to_string(ordinal);
  }
  return nullptr;
}
