// Writes a Hugging Face checkpoint directory atomically: sharded safetensors
// (model-0000i-of-0000N.safetensors + model.safetensors.index.json, or a
// single model.safetensors), config.json, and the source's non-weight files.
// Everything goes into a hidden temporary directory beside the destination;
// Commit() fsyncs every file and the directory, then renames it into place,
// so an interrupted write never leaves a directory that looks complete.
//
//   CARE_ASSIGN_OR_RETURN(auto w, CheckpointWriter::Create(dest, {}));
//   CARE_RETURN_IF_ERROR(w->AddTensorF32("model.norm.weight", t,
//   DType::kBF16)); CARE_RETURN_IF_ERROR(w->SetConfig(config_json));
//   CARE_RETURN_IF_ERROR(w->CopyAuxiliaryFiles(src_dir));
//   CARE_RETURN_IF_ERROR(w->Commit());
#ifndef CARE_IO_CHECKPOINT_WRITER_H_
#define CARE_IO_CHECKPOINT_WRITER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/io/direct_appender.h"
#include "care/io/dtype.h"
#include "care/io/file_util.h"
#include "care/io/tensor.h"

namespace care::io {

struct WriterOptions {
  // A shard is closed before a tensor would take it past this many data
  // bytes (a larger tensor gets a shard of its own). Default 5 GB, as
  // transformers' save_pretrained.
  uint64_t max_shard_bytes = 5'000'000'000;
  // Replace an existing destination (swapped in atomically); otherwise an
  // existing destination is an AlreadyExists error.
  bool overwrite = false;
  // Bytes kept free at the start of each shard for its header, so tensor
  // data is written once, in place (the header is space-padded to fill it,
  // as the format allows). A header that does not fit, or 0, stages the data
  // and copies it behind the header at Commit() instead (written twice).
  // The default (-1) reserves 1 MiB (~7,000 tensors) when max_shard_bytes
  // >= 1 GB, and nothing for small shards, which stay compact.
  int64_t header_reserve_bytes = -1;
  // Part of the temporary directory's name, `.<dest name>.tmp-<tag>-XXXXXX`
  // (e.g. a job attempt), so its owner can find and remove it after a crash.
  // Letters, digits, '-', '_' and '.' only.
  std::string temp_tag{};
  // Called after everything is written and fsynced, just before the rename
  // into place: an error aborts the commit (nothing is published and the
  // temporary directory is removed). The worker's fenced commit.
  std::function<absl::Status()> before_rename{};
};

// True for files that hold weights (never copied by CopyAuxiliaryFiles):
// *.safetensors, *.bin, *.pt, *.pth, *.ckpt, *.h5, *.msgpack, *.gguf, the
// safetensors / pytorch index files, and config.json.
bool IsWeightOrConfigFile(absl::string_view file_name);

class CheckpointWriter {
 public:
  // Creates the temporary directory beside `dest_dir`, whose parent must
  // exist. Errors: AlreadyExists (dest exists, overwrite false), NotFound
  // (no parent), PermissionDenied.
  static absl::StatusOr<std::unique_ptr<CheckpointWriter>> Create(
      const std::string& dest_dir, WriterOptions options = {});
  // Without Commit(), removes the temporary directory.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Converts `tensor` to `out` (F32, F16 or BF16, round-to-nearest-even)
  // and appends it to the current shard.
  absl::Status AddTensorF32(const std::string& name, const Tensor& tensor,
                            DType out);
  // Appends stored bytes as they are (bit-exact copies from a Checkpoint's
  // Raw()). bytes.size() must equal numel(shape) * DTypeSize(dtype). With
  // `file` (the same bytes in an open file) they are read with pread
  // rather than through the source's mapping, which page-faulted it in
  // 4 KiB at a time (docs/performance.md, "Against PyTorch").
  // Tensor data goes to disk with O_DIRECT where the filesystem allows it
  // (direct_appender.h).
  absl::Status AddTensorRaw(const std::string& name, DType dtype,
                            const std::vector<int64_t>& shape,
                            absl::string_view bytes, FileRange file = {});
  // config.json, written at Commit() (required).
  absl::Status SetConfig(const nlohmann::json& config);
  // Copies every regular file of `src_dir` that is not a weight/config file
  // (IsWeightOrConfigFile): tokenizer files, generation_config.json, chat
  // templates, README, ... Subdirectories are not copied.
  absl::Status CopyAuxiliaryFiles(const std::string& src_dir);
  // Writes an extra file (e.g. a conversion report) into the checkpoint.
  absl::Status WriteFile(const std::string& file_name,
                         absl::string_view contents);
  // Flushes the tensor data written so far to disk (fdatasync of every
  // shard), so that a caller can do it while other work runs and Commit()'s
  // fsync finds little left to write.
  absl::Status SyncData();
  // With overwrite, drops the page cache of the files of the checkpoint
  // that Commit() will replace (posix_fadvise DONTNEED; the files and their
  // contents stay until the commit). Removing a cached multi-GB file after
  // the commit otherwise spends ~0.5 s freeing its pages; done early, on a
  // thread that overlaps other work, that cost leaves the commit.
  void DropReplacedCache() const;
  // Closes the last shard, names the shards, writes the index and config,
  // fsyncs, and renames into place. The writer is unusable afterwards.
  absl::Status Commit();

  const std::string& dest_dir() const { return dest_; }
  const std::string& temp_dir() const { return tmp_; }
  // Names of the tensors added so far, in order.
  const std::vector<std::string>& tensor_names() const { return order_; }

 private:
  struct PendingTensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  struct Shard {
    std::string data_path;    // Data section, written as tensors arrive.
    uint64_t data_start = 0;  // Offset of the data in data_path (reserve).
    std::unique_ptr<DirectAppender> out;  // null once closed
    uint64_t bytes = 0;
    std::vector<PendingTensor> tensors;
  };

  CheckpointWriter() = default;
  absl::Status CheckNewTensor(const std::string& name);
  // Returns the shard that receives `nbytes` more, opening a new one first
  // when the current one would exceed max_shard_bytes.
  absl::StatusOr<Shard*> ShardFor(uint64_t nbytes);
  // Writes <tmp>/<final_name>: header + the shard's data section.
  absl::Status FinishShard(Shard& shard, const std::string& final_name);
  absl::Status WriteSmallFile(const std::string& name,
                              absl::string_view contents);

  std::string dest_;
  std::string tmp_;
  WriterOptions options_;
  uint64_t reserve_ = 0;  // Resolved header_reserve_bytes.
  std::vector<Shard> shards_;
  std::vector<std::string> order_;
  std::set<std::string, std::less<>> names_;
  std::set<std::string> written_files_;  // Names in tmp_ we created.
  std::optional<nlohmann::json> config_;
  bool committed_ = false;
  bool failed_ = false;  // A write error leaves the writer unusable.
};

}  // namespace care::io

#endif  // CARE_IO_CHECKPOINT_WRITER_H_
