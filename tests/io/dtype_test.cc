// Conversions between float32 and F16/BF16: exact identities (every 16-bit
// pattern round-trips) and round-to-nearest-even ties; the vectorized paths
// must agree bit for bit with the scalar ones (and F16C hardware, where the
// build uses it, is an independent reference for the scalar F16 code).
#include "care/io/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace care::io {
namespace {

bool IsNanBits16(uint16_t h, bool bf16) {
  return bf16 ? ((h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0)
              : ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
}

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
  EXPECT_EQ(DTypeName(DType::kF8E4M3), "F8_E4M3");
  EXPECT_EQ(ParseDType("BF16"), DType::kBF16);
  EXPECT_EQ(ParseDType("bf16"), std::nullopt);  // Case matters in the format.
  EXPECT_EQ(ParseDType("Q4_0"), std::nullopt);
  EXPECT_EQ(DTypeFromTorchName("bfloat16"), DType::kBF16);
  EXPECT_EQ(DTypeFromTorchName("float16"), DType::kF16);
  EXPECT_EQ(DTypeFromTorchName("int8"), std::nullopt);
  EXPECT_EQ(TorchDTypeName(DType::kF32), "float32");
}

TEST(DTypeTest, EveryBf16PatternRoundTrips) {
  std::vector<uint16_t> bits(65536);
  for (int i = 0; i < 65536; ++i) bits[i] = static_cast<uint16_t>(i);
  std::vector<float> f(65536);
  Bf16ToF32(bits.data(), f.data(), bits.size());
  std::vector<uint16_t> back(65536);
  F32ToBf16(f.data(), back.data(), f.size());
  for (int i = 0; i < 65536; ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(f[i]), static_cast<uint32_t>(i) << 16);
    if (IsNanBits16(bits[i], true)) {
      ASSERT_TRUE(IsNanBits16(back[i], true)) << i;
    } else {
      ASSERT_EQ(back[i], bits[i]) << i;
    }
    ASSERT_EQ(F32ToBf16Bits(f[i]), back[i]) << i;
  }
}

TEST(DTypeTest, EveryF16PatternRoundTrips) {
  std::vector<uint16_t> bits(65536);
  for (int i = 0; i < 65536; ++i) bits[i] = static_cast<uint16_t>(i);
  std::vector<float> f(65536);
  F16ToF32(bits.data(), f.data(), bits.size());
  std::vector<uint16_t> back(65536);
  F32ToF16(f.data(), back.data(), f.size());
  for (int i = 0; i < 65536; ++i) {
    const float scalar = F16BitsToF32(bits[i]);
    if (IsNanBits16(bits[i], false)) {
      ASSERT_TRUE(std::isnan(f[i]) && std::isnan(scalar)) << i;
      ASSERT_TRUE(IsNanBits16(back[i], false)) << i;
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(f[i]), std::bit_cast<uint32_t>(scalar))
        << i;
    ASSERT_EQ(back[i], bits[i]) << i;
    ASSERT_EQ(F32ToF16Bits(f[i]), bits[i]) << i;
  }
  EXPECT_EQ(F16BitsToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16BitsToF32(0x0001), std::ldexp(1.0f, -24));  // Min subnormal.
  EXPECT_EQ(F16BitsToF32(0x7bff), 65504.0f);
}

TEST(DTypeTest, RoundsToNearestEven) {
  // 1 + 2^-8 lies halfway between BF16 1.0 (0x3f80) and 1 + 2^-7 (0x3f81):
  // the tie goes to the even mantissa 0x3f80; 1 + 3*2^-8 goes up to 0x3f82.
  EXPECT_EQ(F32ToBf16Bits(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(F32ToBf16Bits(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(F32ToBf16Bits(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)),
            0x3f81);  // Just above the tie.
  EXPECT_EQ(F32ToBf16Bits(-1.0f - std::ldexp(1.0f, -8)), 0xbf80);
  EXPECT_EQ(F32ToBf16Bits(std::numeric_limits<float>::max()), 0x7f80);  // inf
  // F16: 1 + 2^-11 is the tie between 1.0 and 1 + 2^-10.
  EXPECT_EQ(F32ToF16Bits(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(F32ToF16Bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(F32ToF16Bits(65504.0f), 0x7bff);
  EXPECT_EQ(F32ToF16Bits(65519.0f), 0x7bff);  // Below the overflow tie.
  EXPECT_EQ(F32ToF16Bits(65520.0f), 0x7c00);  // Tie rounds to even = inf.
  EXPECT_EQ(F32ToF16Bits(std::ldexp(1.0f, -25)), 0x0000);  // Tie to zero.
  EXPECT_EQ(F32ToF16Bits(std::ldexp(3.0f, -26)), 0x0001);  // Above the tie.
  EXPECT_EQ(F32ToF16Bits(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp -> 2.
}

TEST(DTypeTest, VectorPathsMatchScalarOnRandomValues) {
  std::mt19937 rng(7);
  std::vector<float> src(100003);  // Odd length exercises the scalar tails.
  for (size_t i = 0; i < src.size(); ++i) {
    // Random bit patterns cover every exponent, sign, NaN and subnormal.
    src[i] = std::bit_cast<float>(static_cast<uint32_t>(rng()));
  }
  std::vector<uint16_t> bf(src.size()), hf(src.size());
  F32ToBf16(src.data(), bf.data(), src.size());
  F32ToF16(src.data(), hf.data(), src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (std::isnan(src[i])) {
      ASSERT_TRUE(IsNanBits16(bf[i], true));
      ASSERT_TRUE(IsNanBits16(hf[i], false));
      continue;
    }
    ASSERT_EQ(bf[i], F32ToBf16Bits(src[i])) << src[i];
    ASSERT_EQ(hf[i], F32ToF16Bits(src[i])) << src[i];
  }
}

TEST(DTypeTest, UnalignedBuffers) {
  std::vector<unsigned char> buf(2 * 37 + 1);
  std::vector<float> in(37), out(37);
  for (int i = 0; i < 37; ++i) in[i] = 0.25f * i - 3.0f;
  F32ToBf16(in.data(), buf.data() + 1, in.size());
  Bf16ToF32(buf.data() + 1, out.data(), out.size());
  EXPECT_EQ(in, out);  // Quarter-steps are exact in BF16.
}

TEST(DTypeTest, ConvertDispatch) {
  const double d[3] = {1.5, -2.25, 1e300};
  float f[3];
  ASSERT_TRUE(ConvertToF32(DType::kF64, d, 3, f).ok());
  EXPECT_EQ(f[0], 1.5f);
  EXPECT_EQ(f[1], -2.25f);
  EXPECT_TRUE(std::isinf(f[2]));
  absl::Status s = ConvertToF32(DType::kI64, d, 3, f);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("I64"), std::string::npos);
  EXPECT_FALSE(ConvertFromF32(DType::kF64, f, 3, nullptr).ok());
  // Empty tensors: null buffers are fine (found by the fuzzer under UBSan).
  EXPECT_TRUE(ConvertToF32(DType::kF32, nullptr, 0, nullptr).ok());
  EXPECT_TRUE(ConvertFromF32(DType::kBF16, nullptr, 0, nullptr).ok());
}

}  // namespace
}  // namespace care::io
