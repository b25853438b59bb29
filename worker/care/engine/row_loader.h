// Reading selected rows of a 2-D weight (embedding lookup, lm_head vocabulary
// chunks) without converting the whole tensor: from an io::Checkpoint only
// the requested rows' bytes are converted to float32; any other
// TensorSource falls back to loading the tensor once.
#ifndef CARE_ENGINE_ROW_LOADER_H_
#define CARE_ENGINE_ROW_LOADER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

// Rows [begin, end) of the tensor `name` whose shape must be [rows, cols].
// From a checkpoint, the rows' mapped pages are released after conversion
// (see ReleaseMappedPages).
absl::StatusOr<MatrixRM> LoadRows(const TensorSource& source,
                                  const std::string& name, int64_t rows,
                                  int64_t cols, int64_t begin, int64_t end);

// Row ids[i] of `name` ([rows, cols]) as row i of the result [ids, cols].
absl::StatusOr<MatrixRM> GatherRows(const TensorSource& source,
                                    const std::string& name, int64_t rows,
                                    int64_t cols,
                                    const std::vector<int32_t>& ids);

// Drops this process's mapping of the stored bytes of every tensor whose
// name starts with `prefix` (madvise MADV_DONTNEED on the whole pages inside
// each tensor's range), so weights already converted to float32 stop
// counting toward the resident set; the kernel page cache keeps them, and a
// later read faults them back in. No-op for sources other than
// io::Checkpoint.
void ReleaseMappedPages(const TensorSource& source, const std::string& prefix);

// Asks the kernel to read the stored bytes of every tensor whose name starts
// with `prefix` in the background (madvise MADV_WILLNEED), so the next
// layer's reads from disk overlap this layer's compute. Does not add to the
// resident set (the pages go to the page cache, not this mapping). No-op
// for sources other than io::Checkpoint.
void PrefetchMappedPages(const TensorSource& source, const std::string& prefix);

// madvise(MADV_DONTNEED) on the whole pages inside [data, data + size) of a
// mapped checkpoint (advisory).
void ReleaseMappedRange(const char* data, size_t size);

// The same as ReleaseMappedPages for the one tensor `name` (O(1); used after
// copying a tensor's raw bytes, so copying a whole checkpoint keeps one tensor
// resident).
void ReleaseMappedTensor(const TensorSource& source, const std::string& name);

}  // namespace care::engine

#endif  // CARE_ENGINE_ROW_LOADER_H_
