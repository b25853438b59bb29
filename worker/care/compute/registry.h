// Opening a compute backend by device name. "cpu" is built in; "cuda" and
// "cuda:N" load the CUDA plugin libcare_cuda_backend.so with dlopen() and
// call its entry point
//   extern "C" care::compute::Backend* CareCudaBackendCreate(int ordinal,
//                                                            std::string*
//                                                            error);
// which returns a new backend (owned by the caller) or nullptr with *error
// set (no driver, no device N, ...). Before calling it the registry checks
//   extern "C" int CareCudaBackendAbiVersion();
// against kBackendAbiVersion: the Backend class crosses the plugin boundary
// as a C++ vtable, so a plugin built from other sources would call the wrong
// functions; a missing or different version is refused by name. The plugin is
// searched, in order, at
//   1. $CARE_CUDA_BACKEND (a file path), when set;
//   2. <dir of /proc/self/exe>/../lib/care/libcare_cuda_backend.so
//      (the installed layout);
//   3. <build tree>/lib/libcare_cuda_backend.so (compiled in).
// The first path that exists is loaded; a plugin that fails to load or
// create a backend is an error (later paths are not tried). The main
// binaries never link CUDA: only the plugin does. See docs/compute.md.
#ifndef CARE_COMPUTE_REGISTRY_H_
#define CARE_COMPUTE_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/compute/backend.h"

namespace care::compute {

// The entry point's name and type in the plugin.
inline constexpr char kCudaEntryPoint[] = "CareCudaBackendCreate";
using CudaBackendCreateFn = Backend* (*)(int ordinal, std::string* error);

// The version of the binary interface between the binaries and the plugin:
// the Backend class (backend.h), the entry points and CareCudaStats. Bump it
// with any change to them; the plugin returns the value it was compiled
// with from kCudaAbiEntryPoint.
// 2: CopyColumns, RouteGroupedTopK, AttentionShape::v_head_dim/scale.
// 3: the training ops (MatMulTransposeA, Axpby, SquaredDistance,
//    ApplyRotary, AddColumns, CausalAttentionBackward, AdamUpdate).
inline constexpr int kBackendAbiVersion = 3;
inline constexpr char kCudaAbiEntryPoint[] = "CareCudaBackendAbiVersion";
using CudaAbiVersionFn = int (*)();

// "cpu", "cuda" (= cuda:0) or "cuda:N". InvalidArgument for any other name
// (listing the accepted ones); Unavailable when the plugin is missing or
// fails (listing every path tried and the plugin's / dlopen's message).
absl::StatusOr<std::unique_ptr<Backend>> OpenBackend(absl::string_view device);

// A process-wide backend per device name, opened on first use and kept for
// the life of the process (so its buffer pool / device context stay warm
// across engines and passes). Thread-safe to obtain; the Backend itself is
// used by one thread at a time (backend.h). Errors as OpenBackend (not
// cached: a later call tries again).
absl::StatusOr<Backend*> SharedBackend(absl::string_view device);

// The plugin paths OpenBackend("cuda") tries, in order (for messages and
// tests).
std::vector<std::string> CudaPluginSearchPaths();

}  // namespace care::compute

#endif  // CARE_COMPUTE_REGISTRY_H_
