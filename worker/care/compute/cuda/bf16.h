// bf16 <-> fp32 bit conversions shared by host code (weight staging) and
// kernels, so both round identically: round-to-nearest-even, NaN kept quiet.
#ifndef CARE_COMPUTE_CUDA_BF16_H_
#define CARE_COMPUTE_CUDA_BF16_H_

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define CARE_HD __host__ __device__ __forceinline__
#else
#define CARE_HD inline
#endif

namespace care::compute::cuda {

CARE_HD uint32_t FloatBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

CARE_HD float BitsFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

CARE_HD uint16_t F32ToBf16Bits(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  }
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

CARE_HD float Bf16BitsToF32(uint16_t b) {
  return BitsFloat(static_cast<uint32_t>(b) << 16);
}

// IEEE half -> fp32 (exact), for f16 checkpoints.
CARE_HD float F16BitsToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return BitsFloat(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return BitsFloat(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return BitsFloat(sign);
  // Subnormal half: normalize.
  int e = -1;
  do {
    mant <<= 1;
    ++e;
  } while ((mant & 0x400u) == 0);
  return BitsFloat(sign | (static_cast<uint32_t>(112 - e) << 23) |
                   ((mant & 0x3ffu) << 13));
}

}  // namespace care::compute::cuda

#undef CARE_HD

#endif  // CARE_COMPUTE_CUDA_BF16_H_
