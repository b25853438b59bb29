#include "care/io/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/io/file_util.h"

namespace care::io {
namespace {

using nlohmann::json;

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A shard name from the index must stay inside the checkpoint directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(
    const std::string& dir) {
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->dir_ = dir;
  const std::string index_path = absl::StrCat(dir, "/", kSafetensorsIndexFile);
  const std::string single_path = absl::StrCat(dir, "/", kSafetensorsFile);

  if (!FileExists(index_path)) {
    if (!FileExists(single_path)) {
      return absl::NotFoundError(absl::StrCat(
          "no ", kSafetensorsFile, " or ", kSafetensorsIndexFile, " in ", dir));
    }
    CARE_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single_path));
    for (const auto& [name, info] : file->header().tensors) {
      ckpt->tensors_.emplace(name, Entry{file.get(), &info});
    }
    ckpt->file_names_.push_back(kSafetensorsFile);
    ckpt->files_.push_back(std::move(file));
    return ckpt;
  }

  CARE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::DataLossError(
        absl::StrCat(index_path, ": not a valid JSON object"));
  }
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    return absl::DataLossError(
        absl::StrCat(index_path, ": missing the 'weight_map' object"));
  }
  // Open each shard once, in order of first appearance.
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string() || !IsPlainFileName(shard.get<std::string>())) {
      return absl::DataLossError(absl::StrCat(
          index_path, ": weight_map entry for '", tensor,
          "' must be a file name in the same directory, got ", shard.dump()));
    }
    const std::string& shard_name = shard.get_ref<const std::string&>();
    auto it = shards.find(shard_name);
    if (it == shards.end()) {
      const std::string path = absl::StrCat(dir, "/", shard_name);
      if (!FileExists(path)) {
        return absl::NotFoundError(absl::StrCat("missing shard ", path, " (",
                                                index_path, " places tensor '",
                                                tensor, "' in it)"));
      }
      CARE_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
      it = shards.emplace(shard_name, file.get()).first;
      ckpt->file_names_.push_back(shard_name);
      ckpt->files_.push_back(std::move(file));
    }
    const SafetensorsTensorInfo* info = it->second->Find(tensor);
    if (info == nullptr) {
      return absl::DataLossError(absl::StrCat(index_path, " places tensor '",
                                              tensor, "' in ", shard_name,
                                              ", which does not contain it"));
    }
    ckpt->tensors_.emplace(tensor, Entry{it->second, info});
  }
  return ckpt;
}

absl::StatusOr<Checkpoint::Entry> Checkpoint::Find(
    absl::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", name, "' not found in checkpoint ", dir_));
  }
  return it->second;
}

bool Checkpoint::Has(absl::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

absl::StatusOr<std::vector<int64_t>> Checkpoint::Shape(
    absl::string_view name) const {
  CARE_ASSIGN_OR_RETURN(Entry e, Find(name));
  return e.info->shape;
}

absl::StatusOr<Tensor> Checkpoint::LoadF32(absl::string_view name) const {
  CARE_ASSIGN_OR_RETURN(Entry e, Find(name));
  return e.file->LoadF32(name);
}

std::string Checkpoint::Location(absl::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return dir_;
  return it->second.file->path();
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, e] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<RawTensor> Checkpoint::Raw(absl::string_view name) const {
  CARE_ASSIGN_OR_RETURN(Entry e, Find(name));
  RawTensor raw;
  raw.dtype = e.info->dtype;
  raw.shape = e.info->shape;
  CARE_ASSIGN_OR_RETURN(raw.bytes, e.file->RawBytes(name));
  CARE_ASSIGN_OR_RETURN(raw.file, e.file->RawRange(name));
  return raw;
}

absl::StatusOr<DType> Checkpoint::TensorDType(absl::string_view name) const {
  CARE_ASSIGN_OR_RETURN(Entry e, Find(name));
  return e.info->dtype;
}

std::vector<std::string> Checkpoint::Files() const {
  std::vector<std::string> files = file_names_;
  std::sort(files.begin(), files.end());
  return files;
}

uint64_t Checkpoint::TotalBytes() const {
  uint64_t total = 0;
  for (const auto& [name, e] : tensors_) total += e.info->nbytes();
  return total;
}

uint64_t Checkpoint::TotalParameters() const {
  uint64_t total = 0;
  for (const auto& [name, e] : tensors_) total += e.info->numel();
  return total;
}

}  // namespace care::io
