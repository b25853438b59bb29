// One safetensors file: an 8-byte little-endian header length N, N bytes of
// JSON describing each tensor (dtype, shape, [begin, end) offsets into the
// data section), then the data section. The file is mmapped; the header is
// parsed strictly; a tensor's bytes are only touched when it is read.
#ifndef CARE_IO_SAFETENSORS_H_
#define CARE_IO_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/io/dtype.h"
#include "care/io/file_util.h"
#include "care/io/tensor.h"

namespace care::io {

// Headers above this size are rejected before parsing (the reference
// implementation uses the same 100 MB cap).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // Offsets relative to the start of the data section.
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::map<std::string, SafetensorsTensorInfo, std::less<>> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
  uint64_t data_offset = 0;  // 8 + header length: where data begins.
  uint64_t data_size = 0;    // Bytes from data_offset to the end of file.
};

// Parses and validates the header of a whole safetensors file held in
// `file` (data section included, so offsets can be checked against it).
// `origin` (a path) starts every error message. Errors (DataLoss unless
// noted): file shorter than 8 bytes; header length past the end of file or
// above kMaxSafetensorsHeaderBytes; invalid JSON or not an object; an entry
// missing dtype/shape/data_offsets or with extra keys; unknown dtype
// (InvalidArgument, lists the known ones); negative or non-integer shape or
// offsets; begin > end; shape × dtype size != end − begin; end past the data
// section; two tensors whose byte ranges overlap; __metadata__ not an object
// of strings.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    absl::string_view file, absl::string_view origin);

// An open, mmapped safetensors file.
class SafetensorsFile {
 public:
  // NotFound when the file does not exist; PermissionDenied when unreadable;
  // otherwise the errors of ParseSafetensorsHeader.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  uint64_t file_size() const { return size_; }

  // nullptr when absent.
  const SafetensorsTensorInfo* Find(absl::string_view name) const;
  // The tensor's bytes inside the mapping, valid while this object lives.
  absl::StatusOr<absl::string_view> RawBytes(absl::string_view name) const;
  // The same bytes as a range of the open file (for in-kernel copies).
  absl::StatusOr<FileRange> RawRange(absl::string_view name) const;
  // Reads and converts one tensor to float32; touches no other tensor.
  // Reads with pread (not through the mapping); DataLoss if the file
  // shrank since Open.
  absl::StatusOr<Tensor> LoadF32(absl::string_view name) const;

 private:
  SafetensorsFile() = default;
  absl::Status PreadAll(void* dst, uint64_t size, uint64_t offset,
                        absl::string_view tensor) const;

  std::string path_;
  int fd_ = -1;
  const unsigned char* base_ = nullptr;  // mmap of the whole file.
  uint64_t size_ = 0;
  SafetensorsHeader header_;
};

}  // namespace care::io

#endif  // CARE_IO_SAFETENSORS_H_
