#include "care/io/checkpoint_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "care/io/checkpoint.h"
#include "care/io/file_util.h"

namespace care::io {
namespace {

using nlohmann::json;

// Tensor data is converted in chunks of this many elements, so a 1 GB
// tensor needs no second full-size buffer.
constexpr size_t kChunkElements = 1 << 20;

// The process umask, read without changing it (umask(2) would, racing
// other threads' file creation).
mode_t CurrentUmask() {
  FILE* status = std::fopen("/proc/self/status", "r");
  unsigned mask = 022;
  if (status != nullptr) {
    char line[256];
    while (std::fgets(line, sizeof(line), status) != nullptr) {
      if (std::sscanf(line, "Umask: %o", &mask) == 1) break;
    }
    std::fclose(status);
  }
  return static_cast<mode_t>(mask & 0777);
}

}  // namespace

bool IsWeightOrConfigFile(absl::string_view name) {
  for (const char* ext : {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5",
                          ".msgpack", ".gguf"}) {
    if (absl::EndsWith(name, ext)) return true;
  }
  return name == kSafetensorsIndexFile || name == "config.json" ||
         name == "pytorch_model.bin.index.json" ||
         absl::EndsWith(name, ".safetensors.index.json") ||
         absl::EndsWith(name, ".bin.index.json");
}

absl::StatusOr<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Create(
    const std::string& dest_dir, WriterOptions options) {
  if (dest_dir.empty()) {
    return absl::InvalidArgumentError("empty checkpoint destination");
  }
  if (options.max_shard_bytes == 0) {
    return absl::InvalidArgumentError("max_shard_bytes must be > 0");
  }
  if (PathExists(dest_dir) && !options.overwrite) {
    return absl::AlreadyExistsError(
        absl::StrCat("destination ", dest_dir, " already exists"));
  }
  const std::string parent = ParentDir(dest_dir);
  if (!IsDirectory(parent)) {
    return absl::NotFoundError(absl::StrCat("parent directory ", parent, " of ",
                                            dest_dir, " does not exist"));
  }
  // Hidden and beside the destination: same filesystem, so rename works.
  for (char c : options.temp_tag) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return absl::InvalidArgumentError(
          absl::StrCat("temp_tag '", options.temp_tag,
                       "': only letters, digits, '-', '_' and '.'"));
    }
  }
  std::string pattern = absl::StrCat(
      parent, "/.", BaseName(dest_dir), ".tmp-",
      options.temp_tag.empty() ? "" : absl::StrCat(options.temp_tag, "-"),
      "XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return ErrnoStatus(errno, "cannot create a temporary directory in", parent);
  }
  // mkdtemp makes it 0700; the published checkpoint gets the mode of any
  // other new directory (0777 minus the umask), readable on shared volumes.
  if (::chmod(pattern.c_str(), 0777 & ~CurrentUmask()) != 0) {
    const int err = errno;
    RemoveTree(pattern);
    return ErrnoStatus(err, "cannot set the mode of", pattern);
  }
  auto w = std::unique_ptr<CheckpointWriter>(new CheckpointWriter());
  w->dest_ = dest_dir;
  w->tmp_ = pattern;
  w->options_ = options;
  if (options.header_reserve_bytes < 0) {
    w->reserve_ = options.max_shard_bytes >= 1'000'000'000 ? (1u << 20) : 0;
  } else {
    // Rounded up to 8 so the data section stays aligned.
    w->reserve_ = (static_cast<uint64_t>(options.header_reserve_bytes) + 7) &
                  ~uint64_t{7};
  }
  return w;
}

CheckpointWriter::~CheckpointWriter() {
  if (!committed_) RemoveTree(tmp_);
}

absl::Status CheckpointWriter::CheckNewTensor(const std::string& name) {
  if (committed_ || failed_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint writer for ", dest_, " is ",
        committed_ ? "already committed" : "unusable after an earlier error"));
  }
  if (name.empty() || name == "__metadata__") {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid tensor name '", name, "'"));
  }
  if (names_.count(name) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("tensor '", name, "' was already added to ", dest_));
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointWriter::Shard*> CheckpointWriter::ShardFor(
    uint64_t nbytes) {
  if (shards_.empty() ||
      (shards_.back().bytes > 0 &&
       shards_.back().bytes + nbytes > options_.max_shard_bytes)) {
    if (!shards_.empty() && shards_.back().out != nullptr) {
      // Keep fds bounded: the finished shard's data is reopened at Commit.
      absl::Status closed = shards_.back().out->Close();
      shards_.back().out.reset();
      if (!closed.ok()) {
        failed_ = true;
        return closed;
      }
    }
    Shard s;
    s.data_path = absl::StrCat(tmp_, "/.shard-", shards_.size(), ".data");
    s.data_start = reserve_;
    CARE_ASSIGN_OR_RETURN(s.out,
                          DirectAppender::Create(s.data_path, s.data_start));
    shards_.push_back(std::move(s));
  }
  return &shards_.back();
}

absl::Status CheckpointWriter::AddTensorF32(const std::string& name,
                                            const Tensor& tensor, DType out) {
  CARE_RETURN_IF_ERROR(CheckNewTensor(name));
  if (!IsWritableFromF32(out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': cannot write float32 data as ",
                     DTypeName(out), " (F32, F16 or BF16)"));
  }
  if (tensor.numel() != static_cast<int64_t>(tensor.data.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "': shape ", ShapeString(tensor.shape), " holds ",
        tensor.numel(), " values but data has ", tensor.data.size()));
  }
  const size_t esize = DTypeSize(out);
  const uint64_t nbytes = tensor.data.size() * esize;
  CARE_ASSIGN_OR_RETURN(Shard * shard, ShardFor(nbytes));
  std::vector<unsigned char> buf(std::min(tensor.data.size(), kChunkElements) *
                                 esize);
  for (size_t i = 0; i < tensor.data.size(); i += kChunkElements) {
    const size_t n = std::min(kChunkElements, tensor.data.size() - i);
    CARE_RETURN_IF_ERROR(
        ConvertFromF32(out, tensor.data.data() + i, n, buf.data()));
    absl::Status s = shard->out->Append(buf.data(), n * esize);
    if (!s.ok()) {
      failed_ = true;
      return s;
    }
  }
  shard->tensors.push_back(
      {name, out, tensor.shape, shard->bytes, shard->bytes + nbytes});
  shard->bytes += nbytes;
  names_.insert(name);
  order_.push_back(name);
  return absl::OkStatus();
}

absl::Status CheckpointWriter::AddTensorRaw(const std::string& name,
                                            DType dtype,
                                            const std::vector<int64_t>& shape,
                                            absl::string_view bytes,
                                            FileRange file) {
  CARE_RETURN_IF_ERROR(CheckNewTensor(name));
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "': negative dimension in ", ShapeString(shape)));
    }
    numel *= static_cast<uint64_t>(d);
  }
  if (numel * DTypeSize(dtype) != bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': shape ", ShapeString(shape), " of ",
                     DTypeName(dtype), " needs ", numel * DTypeSize(dtype),
                     " bytes, got ", bytes.size()));
  }
  CARE_ASSIGN_OR_RETURN(Shard * shard, ShardFor(bytes.size()));
  absl::Status s = file.fd >= 0
                       ? shard->out->AppendFrom(file, bytes.size())
                       : shard->out->Append(bytes.data(), bytes.size());
  if (!s.ok()) {
    failed_ = true;
    return s;
  }
  shard->tensors.push_back(
      {name, dtype, shape, shard->bytes, shard->bytes + bytes.size()});
  shard->bytes += bytes.size();
  names_.insert(name);
  order_.push_back(name);
  return absl::OkStatus();
}

absl::Status CheckpointWriter::SetConfig(const json& config) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError("config.json must be a JSON object");
  }
  config_ = config;
  return absl::OkStatus();
}

absl::Status CheckpointWriter::WriteSmallFile(const std::string& name,
                                              absl::string_view contents) {
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid file name '", name, "' for ", dest_));
  }
  CARE_RETURN_IF_ERROR(
      WriteFileSynced(absl::StrCat(tmp_, "/", name), contents));
  written_files_.insert(name);
  return absl::OkStatus();
}

absl::Status CheckpointWriter::WriteFile(const std::string& file_name,
                                         absl::string_view contents) {
  if (IsWeightOrConfigFile(file_name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", file_name, "' is written by the checkpoint writer itself"));
  }
  return WriteSmallFile(file_name, contents);
}

absl::Status CheckpointWriter::CopyAuxiliaryFiles(const std::string& src_dir) {
  DIR* dir = ::opendir(src_dir.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, "cannot list", src_dir);
  std::vector<std::string> files;
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name[0] == '.') continue;
    if (IsWeightOrConfigFile(name)) continue;
    if (!IsRegularFile(absl::StrCat(src_dir, "/", name))) continue;
    files.push_back(std::move(name));
  }
  ::closedir(dir);
  std::sort(files.begin(), files.end());
  for (const std::string& name : files) {
    CARE_RETURN_IF_ERROR(CopyFileSynced(absl::StrCat(src_dir, "/", name),
                                        absl::StrCat(tmp_, "/", name)));
    written_files_.insert(name);
  }
  return absl::OkStatus();
}

absl::Status CheckpointWriter::FinishShard(Shard& shard,
                                           const std::string& final_name) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  for (const PendingTensor& t : shard.tensors) {
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {t.begin, t.end}}};
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned.
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  const uint64_t len = text.size();

  const std::string path = absl::StrCat(tmp_, "/", final_name);
  if (shard.data_start > 0 && 8 + len <= shard.data_start) {
    // In place: fill the reserved space with the padded header.
    text.append(shard.data_start - 8 - len, ' ');
    const uint64_t padded = text.size();
    std::string head(8, '\0');
    std::memcpy(head.data(), &padded, 8);
    head += text;
    int fd = ::open(shard.data_path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "cannot open", shard.data_path);
    if (::pwrite(fd, head.data(), head.size(), 0) !=
        static_cast<ssize_t>(head.size())) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "cannot write the header of", shard.data_path);
    }
    return CommitFile(fd, shard.data_path, path);
  }
  int out =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) return ErrnoStatus(errno, "cannot create", path);
  int in = ::open(shard.data_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    int err = errno;
    ::close(out);
    return ErrnoStatus(err, "cannot open", shard.data_path);
  }
  absl::Status s = WriteAll(out, &len, 8, path);
  if (s.ok()) s = WriteAll(out, text.data(), text.size(), path);
  if (s.ok()) {
    s = CopyFdRange(in, out, shard.bytes, shard.data_path, path,
                    shard.data_start);
  }
  if (s.ok() && ::fsync(out) != 0) s = ErrnoStatus(errno, "cannot fsync", path);
  if (::close(out) != 0 && s.ok()) s = ErrnoStatus(errno, "cannot close", path);
  ::close(in);
  if (s.ok()) ::unlink(shard.data_path.c_str());
  return s;
}

absl::Status CheckpointWriter::SyncData() {
  for (Shard& s : shards_) {
    if (s.out != nullptr) {
      CARE_RETURN_IF_ERROR(s.out->Sync());
      continue;
    }
    const int fd = ::open(s.data_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "cannot open", s.data_path);
    const int rc = ::fdatasync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoStatus(err, "cannot sync", s.data_path);
  }
  return absl::OkStatus();
}

void CheckpointWriter::DropReplacedCache() const {
  if (!options_.overwrite) return;
  DIR* dir = ::opendir(dest_.c_str());
  if (dir == nullptr) return;  // nothing to replace
  while (struct dirent* e = ::readdir(dir)) {
    const std::string path = absl::StrCat(dest_, "/", e->d_name);
    if (e->d_name[0] == '.' || !IsRegularFile(path)) continue;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // advisory: an unreadable file is left alone
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  ::closedir(dir);
}

absl::Status CheckpointWriter::Commit() {
  if (committed_ || failed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint writer for ", dest_,
                     committed_ ? " is already committed"
                                : " is unusable after an earlier error"));
  }
  if (!config_) {
    return absl::FailedPreconditionError(
        absl::StrCat("no config.json set for ", dest_));
  }
  if (names_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no tensors added to ", dest_));
  }
  failed_ = true;  // Until the rename succeeds, a retry is not meaningful.
  for (Shard& s : shards_) {
    if (s.out != nullptr) {
      absl::Status closed = s.out->Close();
      s.out.reset();
      CARE_RETURN_IF_ERROR(closed);
    }
  }
  const size_t n = shards_.size();
  json weight_map = json::object();
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const std::string name =
        n == 1 ? std::string(kSafetensorsFile)
               : absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, n);
    CARE_RETURN_IF_ERROR(FinishShard(shards_[i], name));
    for (const PendingTensor& t : shards_[i].tensors) {
      weight_map[t.name] = name;
      total += t.end - t.begin;
    }
  }
  if (n > 1) {
    json index = {{"metadata", {{"total_size", total}}},
                  {"weight_map", weight_map}};
    CARE_RETURN_IF_ERROR(
        WriteSmallFile(kSafetensorsIndexFile, index.dump(2) + "\n"));
  }
  CARE_RETURN_IF_ERROR(WriteSmallFile("config.json", config_->dump(2) + "\n"));
  CARE_RETURN_IF_ERROR(FsyncPath(tmp_));

  if (options_.before_rename) CARE_RETURN_IF_ERROR(options_.before_rename());
  const std::string parent = ParentDir(dest_);
  if (PathExists(dest_)) {
    if (!options_.overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat("destination ", dest_, " appeared while writing"));
    }
    // Swap atomically, then delete the old tree (now at tmp_).
    if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, dest_.c_str(),
                    RENAME_EXCHANGE) != 0) {
      return ErrnoStatus(errno, "cannot replace", dest_);
    }
    RemoveTree(tmp_);
  } else if (::rename(tmp_.c_str(), dest_.c_str()) != 0) {
    return ErrnoStatus(errno, "cannot rename the checkpoint into", dest_);
  }
  committed_ = true;
  failed_ = false;
  return FsyncPath(parent);
}

}  // namespace care::io
