// Element types of safetensors checkpoints and fast conversion of F32, F16,
// BF16 (and F64 on read) to and from float32. Conversions from float32 round
// to nearest, ties to even, as PyTorch's .to(torch.bfloat16 / float16) does.
#ifndef CARE_IO_DTYPE_H_
#define CARE_IO_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace care::io {

// Every dtype of the safetensors format; only the floating ones convert.
enum class DType {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};

// Bytes per element.
size_t DTypeSize(DType dtype);
// The safetensors spelling: "F32", "BF16", ...
absl::string_view DTypeName(DType dtype);
// Parses the safetensors spelling; nullopt when unknown.
std::optional<DType> ParseDType(absl::string_view name);
// "float32" / "float16" / "bfloat16" (config.json's torch_dtype), also
// accepting the safetensors spelling; nullopt for anything else.
std::optional<DType> DTypeFromTorchName(absl::string_view name);
// The torch_dtype spelling of F32/F16/BF16/F64; "" for the others.
absl::string_view TorchDTypeName(DType dtype);
// True for F32, F16, BF16 and F64, the types ConvertToF32 accepts.
bool IsConvertibleToF32(DType dtype);
// True for F32, F16 and BF16, the types ConvertFromF32 produces.
bool IsWritableFromF32(DType dtype);

// n zero floats. Large buffers are backed by transparent huge pages where
// the kernel allows it (THP "madvise" mode): zero-filling 1 GB then takes
// ~500 page faults instead of ~250,000, which otherwise dominate loading.
std::vector<float> AllocateF32(size_t n);

// Element-wise conversions. `src` and `dst` may be unaligned (mmapped data);
// they must not overlap. The loops are written for the compiler to vectorize;
// F16 uses the F16C instructions when the target has them.
void Bf16ToF32(const void* src, float* dst, size_t n);
void F16ToF32(const void* src, float* dst, size_t n);
void F32ToBf16(const float* src, void* dst, size_t n);
void F32ToF16(const float* src, void* dst, size_t n);

// Scalar forms, used by tests and for single values.
float Bf16BitsToF32(uint16_t bits);
uint16_t F32ToBf16Bits(float value);
float F16BitsToF32(uint16_t bits);
uint16_t F32ToF16Bits(float value);

// Converts n elements of `dtype` at `src` to float32. InvalidArgument when
// `dtype` does not convert (integers, FP8), naming it.
absl::Status ConvertToF32(DType dtype, const void* src, size_t n, float* dst);
// Converts n float32 values to `dtype` (F32, F16 or BF16) at `dst`, which
// holds n * DTypeSize(dtype) bytes.
absl::Status ConvertFromF32(DType dtype, const float* src, size_t n, void* dst);

}  // namespace care::io

#endif  // CARE_IO_DTYPE_H_
