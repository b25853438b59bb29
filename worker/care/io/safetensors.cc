#include "care/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::io {
namespace {

using nlohmann::json;

absl::Status Corrupt(absl::string_view origin, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(origin, ": ", what));
}

absl::StatusOr<uint64_t> ReadUnsigned(const json& v, absl::string_view origin,
                                      absl::string_view tensor,
                                      absl::string_view field) {
  if (!v.is_number_unsigned()) {
    return Corrupt(
        origin,
        absl::StrCat("tensor '", tensor, "': ", field,
                     " must hold non-negative integers, got ", v.dump()));
  }
  return v.get<uint64_t>();
}

absl::StatusOr<SafetensorsTensorInfo> ParseEntry(const std::string& name,
                                                 const json& entry,
                                                 uint64_t data_size,
                                                 absl::string_view origin) {
  if (!entry.is_object()) {
    return Corrupt(origin, absl::StrCat("tensor '", name,
                                        "': entry is not a JSON object"));
  }
  for (const auto& [key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return Corrupt(origin,
                     absl::StrCat("tensor '", name, "': unexpected key '", key,
                                  "' (allowed: dtype, shape, data_offsets)"));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) {
      return Corrupt(origin,
                     absl::StrCat("tensor '", name, "': missing '", key, "'"));
    }
  }
  SafetensorsTensorInfo info;
  info.name = name;
  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) {
    return Corrupt(origin,
                   absl::StrCat("tensor '", name, "': dtype is not a string"));
  }
  std::optional<DType> parsed = ParseDType(dtype.get_ref<const std::string&>());
  if (!parsed) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": tensor '", name, "': unknown dtype '",
        dtype.get_ref<const std::string&>(),
        "' (known: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, "
        "U32, F32, F64, I64, U64)"));
  }
  info.dtype = *parsed;

  const json& shape = entry["shape"];
  if (!shape.is_array()) {
    return Corrupt(origin,
                   absl::StrCat("tensor '", name, "': shape is not an array"));
  }
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : shape) {
    CARE_ASSIGN_OR_RETURN(uint64_t dim, ReadUnsigned(d, origin, name, "shape"));
    if (dim > static_cast<uint64_t>(INT64_MAX)) overflow = true;
    info.shape.push_back(static_cast<int64_t>(dim));
    overflow |= __builtin_mul_overflow(numel, dim, &numel);
  }
  uint64_t nbytes = 0;
  overflow |= __builtin_mul_overflow(numel, DTypeSize(info.dtype), &nbytes);

  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    return Corrupt(
        origin,
        absl::StrCat("tensor '", name, "': data_offsets must be [begin, end]"));
  }
  CARE_ASSIGN_OR_RETURN(info.begin,
                        ReadUnsigned(offsets[0], origin, name, "data_offsets"));
  CARE_ASSIGN_OR_RETURN(info.end,
                        ReadUnsigned(offsets[1], origin, name, "data_offsets"));
  if (info.begin > info.end) {
    return Corrupt(
        origin, absl::StrCat("tensor '", name, "': data_offsets [", info.begin,
                             ", ", info.end, "] has begin > end"));
  }
  if (info.end > data_size) {
    return Corrupt(
        origin, absl::StrCat("tensor '", name, "': data_offsets [", info.begin,
                             ", ", info.end, "] end past the data section of ",
                             data_size, " bytes (truncated file?)"));
  }
  if (overflow || nbytes != info.end - info.begin) {
    return Corrupt(
        origin,
        absl::StrCat("tensor '", name, "': shape ", ShapeString(info.shape),
                     " of ", DTypeName(info.dtype), " needs ",
                     overflow ? std::string("an overflowing number of")
                              : absl::StrCat(nbytes),
                     " bytes but data_offsets [", info.begin, ", ", info.end,
                     "] span ", info.end - info.begin));
  }
  return info;
}

}  // namespace

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    absl::string_view file, absl::string_view origin) {
  if (file.size() < 8) {
    return Corrupt(
        origin, absl::StrCat("truncated: the file is ", file.size(),
                             " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len;
  std::memcpy(&header_len, file.data(), 8);  // Little-endian (dtype.cc).
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Corrupt(origin, absl::StrCat("header length ", header_len,
                                        " exceeds the limit of ",
                                        kMaxSafetensorsHeaderBytes,
                                        " bytes (not a safetensors file?)"));
  }
  if (header_len > file.size() - 8) {
    return Corrupt(origin, absl::StrCat("header length ", header_len,
                                        " runs past the end of the file (",
                                        file.size(), " bytes): truncated"));
  }
  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  header.data_size = file.size() - header.data_offset;

  absl::string_view text = file.substr(8, header_len);
  json j = json::parse(text.begin(), text.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Corrupt(origin, "header is not valid JSON");
  }
  if (!j.is_object()) {
    return Corrupt(origin, "header is not a JSON object");
  }
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        return Corrupt(origin, "__metadata__ is not a JSON object");
      }
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          return Corrupt(origin, absl::StrCat("__metadata__ value of '", mk,
                                              "' is not a string"));
        }
        header.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    CARE_ASSIGN_OR_RETURN(SafetensorsTensorInfo info,
                          ParseEntry(key, value, header.data_size, origin));
    header.tensors.emplace(key, std::move(info));
  }

  // Byte ranges must not overlap (empty tensors occupy nothing).
  std::vector<const SafetensorsTensorInfo*> by_offset;
  for (const auto& [name, info] : header.tensors) {
    if (info.end > info.begin) by_offset.push_back(&info);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SafetensorsTensorInfo& prev = *by_offset[i - 1];
    const SafetensorsTensorInfo& cur = *by_offset[i];
    if (cur.begin < prev.end) {
      return Corrupt(
          origin, absl::StrCat("tensors '", prev.name, "' [", prev.begin, ", ",
                               prev.end, ") and '", cur.name, "' [", cur.begin,
                               ", ", cur.end, ") overlap"));
    }
  }
  return header;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string msg = absl::StrCat("cannot open ", path, ": ", strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<uint64_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);  // Not yet owned by `file`.
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot mmap ", path, ": ", strerror(err)));
    }
    file->base_ = static_cast<const unsigned char*>(p);
  }
  file->fd_ = fd;  // Kept for pread in LoadF32.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  absl::string_view bytes(reinterpret_cast<const char*>(file->base_),
                          file->size_);
  CARE_ASSIGN_OR_RETURN(file->header_, ParseSafetensorsHeader(bytes, path));
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
  if (base_ != nullptr) {
    ::munmap(const_cast<unsigned char*>(base_), size_);
  }
}

const SafetensorsTensorInfo* SafetensorsFile::Find(
    absl::string_view name) const {
  auto it = header_.tensors.find(name);
  return it == header_.tensors.end() ? nullptr : &it->second;
}

absl::StatusOr<absl::string_view> SafetensorsFile::RawBytes(
    absl::string_view name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", name, "' not found in ", path_));
  }
  return absl::string_view(
      reinterpret_cast<const char*>(base_) + header_.data_offset + info->begin,
      info->nbytes());
}

absl::StatusOr<FileRange> SafetensorsFile::RawRange(
    absl::string_view name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", name, "' not found in ", path_));
  }
  return FileRange{fd_, header_.data_offset + info->begin, path_};
}

absl::StatusOr<Tensor> SafetensorsFile::LoadF32(absl::string_view name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", name, "' not found in ", path_));
  }
  if (!IsConvertibleToF32(info->dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in ", path_, " has dtype ", DTypeName(info->dtype),
        ", which does not convert to float32"));
  }
  Tensor t;
  t.shape = info->shape;
  t.data = AllocateF32(static_cast<size_t>(info->numel()));
  // pread instead of the mapping: no page fault per 4 KiB of input, and a
  // file truncated behind our back is an error instead of SIGBUS.
  uint64_t offset = header_.data_offset + info->begin;
  // Start reading the whole range from disk now, so I/O overlaps the
  // conversion of the chunks that have already arrived.
  ::posix_fadvise(fd_, static_cast<off_t>(offset),
                  static_cast<off_t>(info->nbytes()), POSIX_FADV_WILLNEED);
  if (info->dtype == DType::kF32) {
    CARE_RETURN_IF_ERROR(PreadAll(t.data.data(), info->nbytes(), offset, name));
    return t;
  }
  // Other dtypes go through a small per-thread buffer that stays in L2;
  // chunks are independent, so large tensors convert on all cores.
  const size_t esize = DTypeSize(info->dtype);
  constexpr size_t kBounceBytes = 256 << 10;
  const size_t chunk = kBounceBytes / esize;
  const int64_t chunks =
      static_cast<int64_t>((t.data.size() + chunk - 1) / chunk);
  std::vector<absl::Status> errors(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static) if (chunks >= 64)
  for (int64_t c = 0; c < chunks; ++c) {
    thread_local std::vector<unsigned char> bounce(kBounceBytes);
    const size_t i = static_cast<size_t>(c) * chunk;
    const size_t n = std::min(chunk, t.data.size() - i);
    absl::Status s =
        PreadAll(bounce.data(), n * esize, offset + i * esize, name);
    if (s.ok()) {
      s = ConvertToF32(info->dtype, bounce.data(), n, t.data.data() + i);
    }
    errors[static_cast<size_t>(c)] = std::move(s);
  }
  for (absl::Status& s : errors) CARE_RETURN_IF_ERROR(s);
  return t;
}

absl::Status SafetensorsFile::PreadAll(void* dst, uint64_t size,
                                       uint64_t offset,
                                       absl::string_view tensor) const {
  auto* p = static_cast<char*>(dst);
  while (size > 0) {
    ssize_t n = ::pread(fd_, p, std::min<uint64_t>(size, 1u << 30),
                        static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::DataLossError(absl::StrCat(
          "cannot read tensor '", tensor, "' from ", path_, ": ",
          n == 0 ? "unexpected end of file (changed since it was opened?)"
                 : strerror(errno)));
    }
    p += n;
    size -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace care::io
