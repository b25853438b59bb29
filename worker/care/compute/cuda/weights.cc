// CudaBackend::LoadWeight: host tensor -> device weight through two pinned
// staging buffers used alternately on the copy stream, so filling one buffer
// on the host overlaps the DMA of the other, and the whole upload overlaps
// the compute stream's work (ops wait for the weight's `done` event only
// when they use it).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cuda/bf16.h"
#include "care/compute/cuda/cuda_backend.h"

namespace care::compute::cuda {
namespace {

// Fills dst with elements [begin, begin + n) of t converted to `out` (bf16
// and f32 copy as they are; f16 widens exactly to f32).
void StageSerial(const HostTensor& t, DType out, int64_t begin, int64_t n,
                 void* dst) {
  const auto* src = static_cast<const unsigned char*>(t.data);
  if (t.dtype == out) {
    const size_t eb = DTypeBytes(out);
    std::memcpy(dst, src + begin * eb, n * eb);
    return;
  }
  // f16 -> f32
  const auto* h = reinterpret_cast<const uint16_t*>(src) + begin;
  auto* f = static_cast<float*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, h + i, sizeof(bits));  // h may be unaligned
    f[i] = F16BitsToF32(bits);
  }
}

// Reading an mmapped checkpoint is bound by page faults and memcpy, not by
// the DMA: split a chunk over a few threads.
constexpr int kStageThreads = 8;
constexpr int64_t kStagePiece = 1 << 20;  // elements per task

void Stage(const HostTensor& t, DType out, int64_t begin, int64_t n,
           void* dst) {
  const int64_t pieces = (n + kStagePiece - 1) / kStagePiece;
  const size_t eb = DTypeBytes(out);
#pragma omp parallel for num_threads(kStageThreads) if (pieces > 1)
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t b = p * kStagePiece;
    StageSerial(t, out, begin + b, std::min(kStagePiece, n - b),
                static_cast<char*>(dst) + b * eb);
  }
}

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
  }
  return "?";
}

}  // namespace

absl::Status CudaBackend::UploadWeight(const HostTensor& t, DType out,
                                       void* dst, CopyRecord& rec,
                                       double* staging_ms) {
  const std::string what = absl::StrCat("a [", t.rows, ", ", t.cols, "] ",
                                        DTypeName(t.dtype), " weight");
  cudaStream_t cs = ctx_->copy_stream();
  const int64_t numel = t.rows * t.cols;
  const size_t eb = DTypeBytes(out);
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaEventRecord(rec.start, cs), "LoadWeight", what));
  const int64_t chunk = Context::kStagingBytes / eb;
  int buf = 0;
  for (int64_t begin = 0; begin < numel; begin += chunk, buf ^= 1) {
    const int64_t n = std::min(chunk, numel - begin);
    // The previous copy out of this buffer must have finished.
    CARE_RETURN_IF_ERROR(
        ctx_->Check(cudaEventSynchronize(ctx_->staging_free(buf)),
                    "LoadWeight: wait for staging", what));
    const auto t0 = std::chrono::steady_clock::now();
    Stage(t, out, begin, n, ctx_->staging(buf));
    *staging_ms += std::chrono::duration<double, std::milli>(
                       std::chrono::steady_clock::now() - t0)
                       .count();
    CARE_RETURN_IF_ERROR(ctx_->Check(
        cudaMemcpyAsync(static_cast<char*>(dst) + begin * eb,
                        ctx_->staging(buf), n * eb, cudaMemcpyHostToDevice, cs),
        "LoadWeight: cudaMemcpyAsync", what));
    CARE_RETURN_IF_ERROR(
        ctx_->Check(cudaEventRecord(ctx_->staging_free(buf), cs),
                    "LoadWeight: record", what));
  }
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaEventRecord(rec.done, cs), "LoadWeight", what));
  return absl::OkStatus();
}

absl::StatusOr<Weight> CudaBackend::LoadWeight(const HostTensor& t) {
  const std::string what = absl::StrCat("a [", t.rows, ", ", t.cols, "] ",
                                        DTypeName(t.dtype), " weight");
  if (t.rows < 1 || t.cols < 1 || t.data == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoadWeight: ", what, " needs rows, cols >= 1 and data"));
  }
  // bf16 stays bf16 (tensor-core GEMMs); f32 stays f32 and f16 widens to
  // f32 (exact), so non-bf16 checkpoints keep their precision.
  const DType out = t.dtype == DType::kBF16 ? DType::kBF16 : DType::kF32;
  const int64_t numel = t.rows * t.cols;
  const size_t eb = DTypeBytes(out);
  const size_t bytes = numel * eb;

  // One upload at a time: the staging buffers are shared.
  std::lock_guard<std::mutex> lock(ctx_->load_mutex());
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  cudaStream_t cs = ctx_->copy_stream();
  auto dw = std::make_shared<DeviceWeight>();
  dw->compute_stream = ctx_->stream();
  dw->record = std::make_shared<CopyRecord>();
  CopyRecord& rec = *dw->record;
  for (cudaEvent_t* e : {&rec.start, &rec.done, &rec.need}) {
    CARE_RETURN_IF_ERROR(
        ctx_->Check(cudaEventCreate(e), "LoadWeight: cudaEventCreate", what));
  }
  CARE_ASSIGN_OR_RETURN(
      dw->memory,
      ctx_->Allocate(bytes, absl::StrCat("LoadWeight of ", what), cs));
  double staging_ms = 0;
  absl::Status st = UploadWeight(t, out, dw->memory.get(), rec, &staging_ms);
  if (!st.ok()) {
    // Copies of earlier chunks may still target the memory about to be
    // freed; let them finish first.
    cudaStreamSynchronize(cs);
    return st;
  }
  if (ctx_->sync_check()) {
    CARE_RETURN_IF_ERROR(ctx_->Check(cudaStreamSynchronize(cs), "LoadWeight",
                                     what + " (CARE_CUDA_SYNC_CHECK)"));
  }
  ctx_->AddCopy(dw->record, static_cast<int64_t>(bytes), staging_ms);

  Weight w;
  w.data = dw->memory.get();
  w.dtype = out;
  w.rows = t.rows;
  w.cols = t.cols;
  w.storage = std::move(dw);
  return w;
}

}  // namespace care::compute::cuda
