#include "gpu_bench_stats.h"

#include <dlfcn.h>

#include <vector>

#include "care/compute/registry.h"

namespace care::bench {
namespace {

void* LoadedPlugin() {
  for (const std::string& path : compute::CudaPluginSearchPaths()) {
    if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD)) return h;
  }
  return nullptr;
}

}  // namespace

std::optional<CareCudaStats> CudaStats(compute::Backend& b) {
  if (b.kind() != compute::DeviceKind::kCuda) return std::nullopt;
  void* h = LoadedPlugin();
  if (h == nullptr) return std::nullopt;
  auto fn =
      reinterpret_cast<CareCudaStatsFn>(dlsym(h, kCareCudaStatsEntryPoint));
  CareCudaStats s{};
  if (fn == nullptr || fn(&b, &s) != 0) return std::nullopt;
  return s;
}

void ResetCudaPeak(compute::Backend& b) {
  if (b.kind() != compute::DeviceKind::kCuda) return;
  void* h = LoadedPlugin();
  if (h == nullptr) return;
  auto fn = reinterpret_cast<CareCudaResetPeakFn>(
      dlsym(h, kCareCudaResetPeakEntryPoint));
  if (fn != nullptr) fn(&b);
}

CardPeak PeakFor(const std::string& name) {
  // Dense BF16 tensor-core peaks: NVIDIA's datasheets list them with 2:4
  // sparsity (H100 SXM and H200: 1,979 TFLOPS; H100 NVL: 1,671; H100 PCIe:
  // 1,513); dense is half. Order matters: "H100 PCIe" / "H100 NVL" before
  // the plain "H100" of the SXM card ("NVIDIA H100 80GB HBM3").
  struct Row {
    const char* key;
    double tflops;
    const char* source;
  };
  static const std::vector<Row> kTable = {
      {"H200", 989.5, "NVIDIA H200 datasheet: 1,979 TFLOPS BF16 sparse / 2"},
      {"H100 PCIe", 756.5,
       "NVIDIA H100 datasheet (PCIe): 1,513 TFLOPS BF16 sparse / 2"},
      {"H100 NVL", 835.5,
       "NVIDIA H100 datasheet (NVL): 1,671 TFLOPS BF16 sparse / 2"},
      {"H100", 989.5,
       "NVIDIA H100 datasheet (SXM): 1,979 TFLOPS BF16 sparse / 2"},
  };
  for (const Row& r : kTable) {
    if (name.find(r.key) != std::string::npos) return {r.tflops, r.source};
  }
  return {};
}

}  // namespace care::bench
