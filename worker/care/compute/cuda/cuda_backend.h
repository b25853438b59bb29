// compute::Backend on one NVIDIA GPU (docs/gpu.md). Activations are fp32 in
// device memory from a stream-ordered pool (cudaMallocAsync); every op is
// issued on one compute stream, in order. Weights are bf16 (from bf16
// checkpoints) or fp32 (from f32 / f16 ones) in device memory, uploaded by
// LoadWeight through pinned staging on a separate copy stream; an op that
// uses a weight waits for its upload with an event, so the upload of layer
// l+1 overlaps the compute of layer l. GEMMs: cuBLAS, bf16 × bf16 with fp32
// accumulation (activations rounded to bf16 for the product), or fp32.
// Only this plugin links CUDA; binaries reach it through registry.h.
#ifndef CARE_COMPUTE_CUDA_CUDA_BACKEND_H_
#define CARE_COMPUTE_CUDA_CUDA_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "care/compute/backend.h"
#include "care/compute/cuda/context.h"

namespace care::compute::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(std::shared_ptr<Context> ctx);
  ~CudaBackend() override;

  std::string name() const override;
  DeviceKind kind() const override { return DeviceKind::kCuda; }
  Context& context() { return *ctx_; }

  absl::StatusOr<Matrix> Allocate(int64_t rows, int64_t cols) override;
  absl::StatusOr<Matrix> Upload(const float* host, int64_t rows,
                                int64_t cols) override;
  absl::Status Download(const Matrix& m, float* host) override;
  absl::Status Copy(const Matrix& src, Matrix* dst) override;
  absl::Status CopyColumns(const Matrix& src, const ColumnBlocks& b,
                           Matrix* dst) override;
  absl::Status SetZero(Matrix* m) override;
  absl::StatusOr<Weight> LoadWeight(const HostTensor& t) override;
  absl::Status Synchronize() override;
  absl::Status ForEach(int64_t n,
                       const std::function<absl::Status(int64_t)>& fn) override;

  absl::Status Linear(const Matrix& x, const Weight& w, const Matrix* bias,
                      Matrix* y, bool accumulate) override;
  absl::Status MatMul(const Matrix& a, const Matrix& b, bool transpose_b,
                      Matrix* c, bool accumulate) override;
  absl::Status MatMulTransposeA(const Matrix& a, const Matrix& b, Matrix* c,
                                bool accumulate) override;

  absl::Status RmsNorm(const Matrix& x, const Matrix& weight, double eps,
                       Matrix* y) override;
  absl::Status RmsNormGroups(const Matrix& weight, double eps, int64_t width,
                             Matrix* x) override;
  absl::Status ApplyRope(const Matrix& cos, const Matrix& sin, int64_t head_dim,
                         Matrix* x) override;
  absl::Status SiluMul(const Matrix& up, Matrix* gate) override;
  absl::Status Add(const Matrix& x, Matrix* y) override;
  absl::Status AddRow(const Matrix& b, Matrix* y) override;
  absl::Status Axpby(double alpha, const Matrix& x, double beta,
                     Matrix* y) override;
  absl::StatusOr<double> SquaredDistance(const Matrix& a,
                                         const Matrix& b) override;
  absl::Status ApplyRotary(const Matrix& cos, const Matrix& sin,
                           int64_t head_dim, const RotaryOptions& o,
                           Matrix* x) override;
  absl::Status AddColumns(const Matrix& src, const ColumnBlocks& b,
                          Matrix* dst) override;

  absl::Status CausalAttention(const AttentionShape& shape, const Matrix& q,
                               const Matrix& k, const Matrix& v,
                               Matrix* out) override;
  absl::Status CausalAttentionBackward(const AttentionShape& shape,
                                       const Matrix& q, const Matrix& k,
                                       const Matrix& v, const Matrix& out,
                                       const Matrix& d_out, Matrix* dq,
                                       Matrix* dk, Matrix* dv) override;
  absl::Status AdamUpdate(const Matrix& grad, const AdamStep& step,
                          Matrix* param, Matrix* m1, Matrix* m2) override;

  absl::StatusOr<Routing> RouteTopK(const Matrix& logits, int64_t k,
                                    bool renormalize) override;
  absl::StatusOr<Routing> RouteGroupedTopK(const Matrix& logits,
                                           const Matrix& bias,
                                           const GroupedTopK& r) override;
  absl::Status GatherRows(const Matrix& x, const std::vector<int64_t>& rows,
                          Matrix* out) override;
  absl::Status ScatterRows(const Matrix& x, const std::vector<int64_t>& rows,
                           const std::vector<float>& scale, Matrix* out,
                           bool accumulate) override;
  absl::Status SumRowGroups(const Matrix& x, int64_t k, Matrix* y) override;

  absl::StatusOr<ScoreState> ScoreBegin(
      const std::vector<int32_t>& targets) override;
  absl::Status ScoreChunk(const Matrix& logits, int64_t row0, int64_t v0,
                          ScoreState* state) override;
  absl::StatusOr<std::vector<double>> ScoreFinish(
      const ScoreState& state) override;

  absl::StatusOr<Gram> NewGram(int64_t dim) override;
  absl::Status GramAdd(const Matrix& x, Gram* g) override;
  absl::StatusOr<GramHost> GramDownload(const Gram& g) override;

  absl::StatusOr<SymmetricEigenResult> SymmetricEigen(
      const Eigen::MatrixXd& a) override;
  absl::StatusOr<SvdResult> Svd(const Eigen::MatrixXd& a, bool compute_u,
                                bool compute_v) override;

 private:
  // Device copy of host ids (int64), for gather/scatter.
  absl::StatusOr<std::shared_ptr<void>> UploadIds(
      const std::vector<int64_t>& ids, const char* op);
  // LoadWeight's chunked copy of t (converted to `out`) to dst, between
  // rec.start and rec.done on the copy stream.
  absl::Status UploadWeight(const HostTensor& t, DType out, void* dst,
                            CopyRecord& rec, double* staging_ms);
  // A bf16 copy of x in a scratch buffer reused across Linear calls.
  absl::StatusOr<void*> Bf16Scratch(const Matrix& x);
  // The launch's error, then (under CARE_CUDA_SYNC_CHECK) its execution's.
  absl::Status CheckLaunch(cudaError_t err, const char* op,
                           const std::string& shapes) const {
    CARE_RETURN_IF_ERROR(ctx_->Check(err, op, shapes));
    return ctx_->SyncCheck(op, shapes);
  }

  std::shared_ptr<Context> ctx_;
  std::shared_ptr<void> scratch_;
  size_t scratch_bytes_ = 0;
};

}  // namespace care::compute::cuda

#endif  // CARE_COMPUTE_CUDA_CUDA_BACKEND_H_
