// libFuzzer target for the safetensors header parser (scripts/fuzz.sh).
// Input: a whole safetensors file. Besides "no crash, no sanitizer report",
// it checks the parser's promise: every accepted tensor lies inside the data
// section with shape x dtype size == its byte range, so converting it reads
// only memory of the input (ASan would flag anything else).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "care/io/dtype.h"
#include "care/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view file(reinterpret_cast<const char*>(data), size);
  auto header = care::io::ParseSafetensorsHeader(file, "fuzz");
  if (!header.ok()) return 0;
  if (header->data_offset + header->data_size != size) __builtin_trap();
  std::vector<float> out;
  for (const auto& [name, info] : header->tensors) {
    if (info.begin > info.end || info.end > header->data_size) {
      __builtin_trap();
    }
    const uint64_t nbytes = info.end - info.begin;
    if (static_cast<uint64_t>(info.numel()) * care::io::DTypeSize(info.dtype) !=
        nbytes) {
      __builtin_trap();
    }
    if (care::io::IsConvertibleToF32(info.dtype) && nbytes <= (64u << 20)) {
      out.resize(static_cast<size_t>(info.numel()));
      (void)care::io::ConvertToF32(info.dtype,
                                   data + header->data_offset + info.begin,
                                   out.size(), out.data());
    }
  }
  return 0;
}
