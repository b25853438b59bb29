// A Hugging Face weights directory: model.safetensors, or shards listed in
// model.safetensors.index.json. Exposes every tensor through TensorSource
// (float32) and raw access (dtype + bytes) for bit-exact copying.
#ifndef CARE_IO_CHECKPOINT_H_
#define CARE_IO_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/io/dtype.h"
#include "care/io/file_util.h"
#include "care/io/safetensors.h"
#include "care/io/tensor_source.h"

namespace care::io {

inline constexpr char kSafetensorsFile[] = "model.safetensors";
inline constexpr char kSafetensorsIndexFile[] = "model.safetensors.index.json";

// A tensor's stored form. `bytes` points into the mmapped file and `file`
// names the same bytes in the open shard; both stay valid while the
// Checkpoint lives.
struct RawTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  absl::string_view bytes;
  FileRange file;
};

class Checkpoint : public care::TensorSource {
 public:
  // Opens <dir>/model.safetensors.index.json and its shards when the index
  // exists, else <dir>/model.safetensors. Errors: NotFound when neither
  // exists or a shard named by the index is missing (naming the shard and a
  // tensor it should hold); DataLoss for a corrupt index or shard, or a
  // tensor the index places in a shard that lacks it; the errors of
  // SafetensorsFile::Open.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(
      const std::string& dir);

  // TensorSource.
  bool Has(absl::string_view name) const override;
  absl::StatusOr<std::vector<int64_t>> Shape(
      absl::string_view name) const override;
  absl::StatusOr<Tensor> LoadF32(absl::string_view name) const override;
  std::string Location(absl::string_view name) const override;
  std::vector<std::string> Names() const override;

  // Stored dtype, shape and bytes, without conversion.
  absl::StatusOr<RawTensor> Raw(absl::string_view name) const;
  absl::StatusOr<DType> TensorDType(absl::string_view name) const;

  const std::string& dir() const { return dir_; }
  // Weight file names relative to dir(), sorted.
  std::vector<std::string> Files() const;
  // Sum of all tensors' stored bytes.
  uint64_t TotalBytes() const;
  // Sum of all tensors' element counts.
  uint64_t TotalParameters() const;

 private:
  struct Entry {
    const SafetensorsFile* file;
    const SafetensorsTensorInfo* info;
  };
  Checkpoint() = default;
  absl::StatusOr<Entry> Find(absl::string_view name) const;

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::string> file_names_;
  std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace care::io

#endif  // CARE_IO_CHECKPOINT_H_
