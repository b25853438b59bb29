// Counters of the CUDA backend, read by bench/gpu and scripts/gpu-check.sh
// through the plugin's second entry point (dlsym):
//   extern "C" int CareCudaBackendStats(care::compute::Backend* backend,
//                                       CareCudaStats* out);
// which waits for all issued work, fills *out and returns 0 (-1 when
// `backend` is not a CUDA backend, -2 on a device error), and
//   extern "C" int CareCudaBackendResetPeak(care::compute::Backend* backend);
// which restarts device_bytes_peak from the bytes in use now (per-phase
// peaks in benchmarks). Plain C layout so the struct crosses dlopen().
#ifndef CARE_COMPUTE_CUDA_STATS_H_
#define CARE_COMPUTE_CUDA_STATS_H_

#include <cstdint>

#include "care/compute/backend.h"

extern "C" {

struct CareCudaStats {
  int64_t weights_loaded;       // LoadWeight calls
  int64_t weight_bytes_copied;  // host -> device bytes of weights
  double host_staging_ms;       // host time filling pinned staging buffers
  double copy_ms;               // copy-stream time of the weight uploads
  // Of copy_ms: the part during which the compute stream waited for a
  // weight (exposed) and the rest (hidden behind compute).
  double copy_exposed_ms;
  double copy_hidden_ms;
  int64_t device_bytes_in_use;  // backend allocations now
  int64_t device_bytes_peak;    // high-water mark of backend allocations
  int64_t device_bytes_total;   // the card's memory
  double gemm_flop;             // 2·n·in·out summed over Linear / MatMul
  double attention_flop;        // 4·d_h·(causal pairs) summed over attention
};

}  // extern "C"

inline constexpr char kCareCudaStatsEntryPoint[] = "CareCudaBackendStats";
using CareCudaStatsFn = int (*)(care::compute::Backend* backend,
                                CareCudaStats* out);
inline constexpr char kCareCudaResetPeakEntryPoint[] =
    "CareCudaBackendResetPeak";
using CareCudaResetPeakFn = int (*)(care::compute::Backend* backend);

#endif  // CARE_COMPUTE_CUDA_STATS_H_
