// The host/device bit conversions of cuda/bf16.h (used by the kernels and by
// LoadWeight), checked on the host against exact arithmetic.
#include "care/compute/cuda/bf16.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace care::compute::cuda {
namespace {

// IEEE half value of bit pattern h, from its definition.
double HalfValue(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) {
    return mant == 0 ? sign * std::numeric_limits<double>::infinity()
                     : std::numeric_limits<double>::quiet_NaN();
  }
  return sign * std::ldexp(1024 + mant, exp - 25);
}

TEST(Bf16, EveryHalfWidensExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = HalfValue(static_cast<uint16_t>(h));
    const float got = F16BitsToF32(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << "half bits " << h;
      EXPECT_EQ(std::signbit(got), (h >> 15) != 0) << h;
    }
  }
}

// bf16 keeps the top 16 bits of a float: the two candidates are the
// truncation and the next pattern up (in magnitude); the nearer wins, ties
// go to the even pattern.
TEST(Bf16, RoundsToNearestEven) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = bits(rng);
    if (i < 1000) u = (u & 0xffff0000u) | 0x8000u;  // exact ties
    const float f = BitsFloat(u);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16BitsToF32(F32ToBf16Bits(f))));
      continue;
    }
    const uint16_t lo = static_cast<uint16_t>(u >> 16);
    const uint16_t hi = static_cast<uint16_t>(lo + 1);
    // Past the largest finite bf16 the next value up is ±2^128 (IEEE
    // rounding overflows to infinity from there).
    const auto value = [](uint16_t b) {
      const double v = Bf16BitsToF32(b);
      return std::isinf(v) ? std::copysign(std::ldexp(1.0, 128), v) : v;
    };
    const double dlo = std::fabs(value(lo) - f);
    const double dhi = std::fabs(value(hi) - f);
    const uint16_t want = dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1 ? hi : lo);
    ASSERT_EQ(F32ToBf16Bits(f), want) << "float bits " << u;
  }
}

TEST(Bf16, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(Bf16BitsToF32(F32ToBf16Bits(inf)), inf);
  EXPECT_EQ(Bf16BitsToF32(F32ToBf16Bits(-inf)), -inf);
  EXPECT_EQ(F32ToBf16Bits(0.0f), 0);
  EXPECT_EQ(F32ToBf16Bits(-0.0f), 0x8000);
  EXPECT_EQ(Bf16BitsToF32(F32ToBf16Bits(1.0f)), 1.0f);
  // The largest float rounds up to infinity, as IEEE rounding does.
  EXPECT_EQ(Bf16BitsToF32(F32ToBf16Bits(std::numeric_limits<float>::max())),
            inf);
  // A signalling NaN comes back quiet, not as infinity.
  EXPECT_TRUE(std::isnan(Bf16BitsToF32(F32ToBf16Bits(BitsFloat(0x7f800001u)))));
}

}  // namespace
}  // namespace care::compute::cuda
