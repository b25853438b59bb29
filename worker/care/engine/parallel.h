// Threshold below which elementwise loops stay serial: an OpenMP region
// costs microseconds (much more on an oversubscribed machine), more than
// small loops take.
#ifndef CARE_ENGINE_PARALLEL_H_
#define CARE_ENGINE_PARALLEL_H_

#include <cstdint>

namespace care::engine::internal {

inline constexpr int64_t kParallelMin = int64_t{1} << 16;  // elements

}  // namespace care::engine::internal

#endif  // CARE_ENGINE_PARALLEL_H_
