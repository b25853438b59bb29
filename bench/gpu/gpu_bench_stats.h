// The CUDA plugin's counters seen from a benchmark (CareCudaBackendStats via
// dlsym on the already loaded plugin), and the dense BF16 peaks of the cards
// the GPU check runs on.
#ifndef CARE_BENCH_GPU_GPU_BENCH_STATS_H_
#define CARE_BENCH_GPU_GPU_BENCH_STATS_H_

#include <optional>
#include <string>

#include "care/compute/backend.h"
#include "care/compute/cuda/stats.h"

namespace care::bench {

// The counters of `b` (nullopt on cpu or when the plugin is not loaded).
std::optional<CareCudaStats> CudaStats(compute::Backend& b);
// Restarts the peak device memory counter (no-op on cpu).
void ResetCudaPeak(compute::Backend& b);

struct CardPeak {
  double bf16_dense_tflops = 0;  // 0 when the card is not in the table
  std::string source;
};
// From the device name in Backend::name() ("cuda:0 (NVIDIA H100 80GB
// HBM3)").
CardPeak PeakFor(const std::string& device_name);

}  // namespace care::bench

#endif  // CARE_BENCH_GPU_GPU_BENCH_STATS_H_
