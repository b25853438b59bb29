#include "care/io/dtype.h"

#include <sys/mman.h>

#include <bit>
#include <cstring>

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

#include "absl/strings/str_cat.h"

namespace care::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts need "
              "byte swapping that is not implemented");

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1},      {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},          {DType::kF8E5M2, "F8_E5M2", 1},
    {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kI16, "I16", 2},
    {DType::kU16, "U16", 2},        {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},      {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},        {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},        {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},
};

const DTypeInfo& Info(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  return kDTypes[0];  // Unreachable: every enumerator is in the table.
}

inline uint16_t LoadU16(const unsigned char* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

size_t DTypeSize(DType dtype) { return Info(dtype).size; }

absl::string_view DTypeName(DType dtype) { return Info(dtype).name; }

std::optional<DType> ParseDType(absl::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  return std::nullopt;
}

std::optional<DType> DTypeFromTorchName(absl::string_view name) {
  if (name == "float32" || name == "float") return DType::kF32;
  if (name == "float16" || name == "half") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  if (name == "float64" || name == "double") return DType::kF64;
  std::optional<DType> d = ParseDType(name);
  if (d && IsConvertibleToF32(*d)) return d;
  return std::nullopt;
}

absl::string_view TorchDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
    case DType::kF64:
      return "float64";
    default:
      return "";
  }
}

bool IsConvertibleToF32(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 ||
         dtype == DType::kBF16 || dtype == DType::kF64;
}

bool IsWritableFromF32(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

float Bf16BitsToF32(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t F32ToBf16Bits(float value) {
  uint32_t u = std::bit_cast<uint32_t>(value);
  // NaN stays NaN (quiet bit set) instead of rounding into infinity.
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((u >> 16) | 0x40u);
  }
  u += 0x7fffu + ((u >> 16) & 1u);  // Round to nearest, ties to even.
  return static_cast<uint16_t>(u >> 16);
}

float F16BitsToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float32.
    float f = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return std::bit_cast<float>(std::bit_cast<uint32_t>(f) | sign);
  }
  if (exp == 31) {
    return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t F32ToF16Bits(float value) {
  uint32_t x = std::bit_cast<uint32_t>(value);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) {  // Inf or NaN (NaN keeps its top payload, quiet).
    return static_cast<uint16_t>(
        sign | 0x7c00u | (x > 0x7f800000u ? 0x200u | ((x >> 13) & 0x3ffu) : 0));
  }
  if (x >= 0x477ff000u) {  // >= 65520 rounds to infinity.
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (x < 0x38800000u) {
    // Below 2^-14: subnormal or zero. Adding 0.5 places the half's ulp
    // (2^-24) at float32's ulp, so the FPU's own ties-to-even rounding applies.
    float f = std::bit_cast<float>(x) + 0.5f;
    return static_cast<uint16_t>(sign |
                                 (std::bit_cast<uint32_t>(f) - 0x3f000000u));
  }
  const uint32_t odd = (x >> 13) & 1u;
  x += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (x >> 13));
}

std::vector<float> AllocateF32(size_t n) {
  std::vector<float> v;
  v.reserve(n);
  constexpr uintptr_t kHuge = 2u << 20;
  if (n * sizeof(float) >= 2 * kHuge) {
    const auto begin = reinterpret_cast<uintptr_t>(v.data());
    const uintptr_t a = (begin + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t e = (begin + n * sizeof(float)) & ~(kHuge - 1);
    if (e > a) ::madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE);
  }
  v.resize(n);
  return v;
}

void Bf16ToF32(const void* src, float* dst, size_t n) {
  const auto* s = static_cast<const unsigned char*>(src);
  size_t i = 0;
#if defined(__AVX2__)
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 2 * i));
    // Interleave zeros below each 16-bit value: bf16 -> f32 bit pattern.
    __m256i lo = _mm256_unpacklo_epi16(_mm256_setzero_si256(), h);
    __m256i hi = _mm256_unpackhi_epi16(_mm256_setzero_si256(), h);
    // unpack works per 128-bit lane; permute restores element order.
    __m256i a = _mm256_permute2x128_si256(lo, hi, 0x20);
    __m256i b = _mm256_permute2x128_si256(lo, hi, 0x31);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), a);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 8), b);
  }
#endif
  for (; i < n; ++i) dst[i] = Bf16BitsToF32(LoadU16(s + 2 * i));
}

void F16ToF32(const void* src, float* dst, size_t n) {
  const auto* s = static_cast<const unsigned char*>(src);
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) dst[i] = F16BitsToF32(LoadU16(s + 2 * i));
}

void F32ToBf16(const float* src, void* dst, size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  size_t i = 0;
#if defined(__AVX2__)
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i quiet = _mm256_set1_epi32(0x40);
  for (; i + 16 <= n; i += 16) {
    __m256i r[2];
    for (int k = 0; k < 2; ++k) {
      __m256i u =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 8 * k));
      __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
      __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
      __m256i rounded = _mm256_srli_epi32(
          _mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
      __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
      r[k] = _mm256_blendv_epi8(rounded, nan, is_nan);
    }
    // Values fit in 16 bits, so unsigned saturation packs them exactly;
    // packus works per lane, the permute restores element order.
    __m256i packed =
        _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 2 * i), packed);
  }
#endif
  for (; i < n; ++i) {
    uint16_t b = F32ToBf16Bits(src[i]);
    std::memcpy(d + 2 * i, &b, sizeof b);
  }
}

void F32ToF16(const float* src, void* dst, size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 2 * i), h);
  }
#endif
  for (; i < n; ++i) {
    uint16_t h = F32ToF16Bits(src[i]);
    std::memcpy(d + 2 * i, &h, sizeof h);
  }
}

absl::Status ConvertToF32(DType dtype, const void* src, size_t n, float* dst) {
  // Empty tensors may come with null buffers, which memcpy must not see.
  if (n == 0 && IsConvertibleToF32(dtype)) return absl::OkStatus();
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return absl::OkStatus();
    case DType::kBF16:
      Bf16ToF32(src, dst, n);
      return absl::OkStatus();
    case DType::kF16:
      F16ToF32(src, dst, n);
      return absl::OkStatus();
    case DType::kF64: {
      const auto* s = static_cast<const unsigned char*>(src);
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, s + 8 * i, sizeof v);
        dst[i] = static_cast<float>(v);
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", DTypeName(dtype),
                       " does not convert to float32 (F32, F16, BF16 and F64 "
                       "do)"));
  }
}

absl::Status ConvertFromF32(DType dtype, const float* src, size_t n,
                            void* dst) {
  if (n == 0 && IsWritableFromF32(dtype)) return absl::OkStatus();
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return absl::OkStatus();
    case DType::kBF16:
      F32ToBf16(src, dst, n);
      return absl::OkStatus();
    case DType::kF16:
      F32ToF16(src, dst, n);
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write float32 data as ", DTypeName(dtype),
                       " (F32, F16 and BF16 are supported)"));
  }
}

}  // namespace care::io
