// CudaBackend: identity, memory, norms and elementwise ops, attention, MoE
// routing and scoring. GEMMs are in gemm.cc, LoadWeight in weights.cc, the
// Gram accumulator and cuSOLVER in gram_solver.cc.
#include "care/compute/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {
namespace {

// Device state of a ScoreState.
struct ScoreBuffers {
  std::shared_ptr<void> run_max, run_sum, target_logit, targets;
};

absl::Status SameShape(const char* op, const Matrix& a, const char* an,
                       const Matrix& b, const char* bn) {
  return CheckShape(op, bn, b, a.rows, a.cols).ok()
             ? absl::OkStatus()
             : absl::InvalidArgumentError(absl::StrCat(
                   op, ": ", bn, " is ", ShapeOf(b), ", expected the shape of ",
                   an, " ", ShapeOf(a)));
}

}  // namespace

CudaBackend::CudaBackend(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}

CudaBackend::~CudaBackend() {
  if (ctx_->Enter().ok()) cudaStreamSynchronize(ctx_->stream());
}

std::string CudaBackend::name() const {
  return absl::StrCat(ctx_->label(), " (", ctx_->device_name(), ")");
}

absl::StatusOr<Matrix> CudaBackend::Allocate(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Allocate: negative shape [", rows, ", ", cols, "]"));
  }
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  if (rows * cols == 0) return m;
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  CARE_ASSIGN_OR_RETURN(
      m.storage,
      ctx_->Allocate(sizeof(float) * rows * cols,
                     absl::StrCat("a [", rows, ", ", cols, "] fp32 matrix")));
  m.data = static_cast<float*>(m.storage.get());
  return m;
}

absl::StatusOr<Matrix> CudaBackend::Upload(const float* host, int64_t rows,
                                           int64_t cols) {
  CARE_ASSIGN_OR_RETURN(Matrix m, Allocate(rows, cols));
  if (m.empty()) return m;
  // From pageable memory the copy is staged before this call returns, so
  // `host` may be released right after.
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(m.data, host, sizeof(float) * m.size(),
                                  cudaMemcpyHostToDevice, ctx_->stream()),
                  "Upload", ShapeOf(m)));
  return m;
}

absl::Status CudaBackend::Download(const Matrix& m, float* host) {
  if (m.empty()) return Synchronize();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(host, m.data, sizeof(float) * m.size(),
                                  cudaMemcpyDeviceToHost, ctx_->stream()),
                  "Download", ShapeOf(m)));
  return ctx_->Check(cudaStreamSynchronize(ctx_->stream()), "Download",
                     ShapeOf(m));
}

absl::Status CudaBackend::Copy(const Matrix& src, Matrix* dst) {
  CARE_RETURN_IF_ERROR(SameShape("Copy", src, "src", *dst, "dst"));
  if (src.empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return ctx_->Check(
      cudaMemcpyAsync(dst->data, src.data, sizeof(float) * src.size(),
                      cudaMemcpyDeviceToDevice, ctx_->stream()),
      "Copy", ShapeOf(src));
}

absl::Status CudaBackend::CopyColumns(const Matrix& src, const ColumnBlocks& b,
                                      Matrix* dst) {
  CARE_RETURN_IF_ERROR(CheckColumnBlocks(src, b, *dst));
  if (b.groups == 0 || b.width == 0 || src.rows == 0) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  // One strided 2-D copy per block: rows of `width` floats, each matrix's
  // own row pitch.
  for (int64_t g = 0; g < b.groups; ++g) {
    CARE_RETURN_IF_ERROR(ctx_->Check(
        cudaMemcpy2DAsync(dst->data + b.dst_col0 + g * b.dst_stride,
                          sizeof(float) * dst->cols,
                          src.data + b.src_col0 + g * b.src_stride,
                          sizeof(float) * src.cols, sizeof(float) * b.width,
                          src.rows, cudaMemcpyDeviceToDevice, ctx_->stream()),
        "CopyColumns", absl::StrCat(ShapeOf(src), " -> ", ShapeOf(*dst))));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::SetZero(Matrix* m) {
  if (m->empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return ctx_->Check(
      cudaMemsetAsync(m->data, 0, sizeof(float) * m->size(), ctx_->stream()),
      "SetZero", ShapeOf(*m));
}

absl::Status CudaBackend::Synchronize() {
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  CARE_RETURN_IF_ERROR(ctx_->Check(cudaStreamSynchronize(ctx_->copy_stream()),
                                   "Synchronize", "copy stream"));
  return ctx_->Check(cudaStreamSynchronize(ctx_->stream()), "Synchronize",
                     "compute stream");
}

absl::Status CudaBackend::ForEach(
    int64_t n, const std::function<absl::Status(int64_t)>& fn) {
  // One stream: in order. All indices run; the lowest failure is returned.
  absl::Status first = absl::OkStatus();
  for (int64_t i = 0; i < n; ++i) {
    absl::Status st = fn(i);
    if (first.ok() && !st.ok()) first = std::move(st);
  }
  return first;
}

absl::Status CudaBackend::RmsNorm(const Matrix& x, const Matrix& weight,
                                  double eps, Matrix* y) {
  CARE_RETURN_IF_ERROR(CheckShape("RmsNorm", "weight", weight, 1, x.cols));
  CARE_RETURN_IF_ERROR(SameShape("RmsNorm", x, "x", *y, "y"));
  if (x.empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(LaunchRmsNorm(x.data, weight.data, y->data, x.rows, x.cols,
                                   x.cols, eps, ctx_->stream()),
                     "RmsNorm", ShapeOf(x));
}

absl::Status CudaBackend::RmsNormGroups(const Matrix& weight, double eps,
                                        int64_t width, Matrix* x) {
  if (width < 1 || x->cols % width != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RmsNormGroups: x ", ShapeOf(*x),
                     " is not a whole number of groups of width ", width));
  }
  CARE_RETURN_IF_ERROR(CheckShape("RmsNormGroups", "weight", weight, 1, width));
  if (x->empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(LaunchRmsNorm(x->data, weight.data, x->data, x->rows,
                                   x->cols, width, eps, ctx_->stream()),
                     "RmsNormGroups",
                     absl::StrCat(ShapeOf(*x), " width ", width));
}

absl::Status CudaBackend::ApplyRope(const Matrix& cos, const Matrix& sin,
                                    int64_t head_dim, Matrix* x) {
  CARE_RETURN_IF_ERROR(SameShape("ApplyRope", cos, "cos", sin, "sin"));
  const int64_t rotary = 2 * cos.cols;
  if (cos.rows < 1 || rotary < 2 || head_dim < rotary ||
      x->cols % head_dim != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ApplyRope: cos/sin ", ShapeOf(cos), " (rotary width ", rotary,
        ") do not fit head_dim ", head_dim, " and x ", ShapeOf(*x),
        " (need 2 <= rotary <= head_dim, x.cols a multiple of head_dim)"));
  }
  if (x->empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(
      LaunchRope(cos.data, sin.data, cos.rows, rotary, head_dim, x->data,
                 x->rows, x->cols, ctx_->stream()),
      "ApplyRope",
      absl::StrCat(ShapeOf(*x), " cos ", ShapeOf(cos), " head_dim ", head_dim));
}

absl::Status CudaBackend::SiluMul(const Matrix& up, Matrix* gate) {
  CARE_RETURN_IF_ERROR(SameShape("SiluMul", *gate, "gate", up, "up"));
  if (up.empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(
      LaunchSiluMul(gate->data, up.data, up.size(), ctx_->stream()), "SiluMul",
      ShapeOf(up));
}

absl::Status CudaBackend::Add(const Matrix& x, Matrix* y) {
  CARE_RETURN_IF_ERROR(SameShape("Add", x, "x", *y, "y"));
  if (x.empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(LaunchAdd(x.data, y->data, x.size(), ctx_->stream()),
                     "Add", ShapeOf(x));
}

absl::Status CudaBackend::AddRow(const Matrix& b, Matrix* y) {
  CARE_RETURN_IF_ERROR(CheckShape("AddRow", "b", b, 1, y->cols));
  if (y->empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(
      LaunchAddRow(b.data, y->data, y->rows, y->cols, ctx_->stream()), "AddRow",
      ShapeOf(*y));
}

absl::Status CudaBackend::CausalAttention(const AttentionShape& s,
                                          const Matrix& q, const Matrix& k,
                                          const Matrix& v, Matrix* out) {
  const int64_t dv = s.value_dim();
  const std::string shape = absl::StrCat(
      "windows ", s.windows, " seq_len ", s.seq_len, " heads ", s.heads,
      " kv_heads ", s.kv_heads, " head_dim ", s.head_dim, " v_head_dim ", dv);
  if (s.windows < 0 || s.seq_len < 0 || s.heads < 1 || s.kv_heads < 1 ||
      s.heads % s.kv_heads != 0 || s.head_dim < 1 || s.v_head_dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CausalAttention: invalid shape (", shape,
                     "); kv_heads must divide heads"));
  }
  if (s.head_dim > kMaxAttentionHeadDim || dv > kMaxAttentionHeadDim) {
    return absl::UnimplementedError(absl::StrCat(
        "CausalAttention on cuda: head_dim ", s.head_dim, " / v_head_dim ", dv,
        " exceed the kernel's limit ", kMaxAttentionHeadDim));
  }
  const int64_t rows = s.windows * s.seq_len;
  CARE_RETURN_IF_ERROR(
      CheckShape("CausalAttention", "q", q, rows, s.heads * s.head_dim));
  CARE_RETURN_IF_ERROR(
      CheckShape("CausalAttention", "k", k, rows, s.kv_heads * s.head_dim));
  CARE_RETURN_IF_ERROR(
      CheckShape("CausalAttention", "v", v, rows, s.kv_heads * dv));
  CARE_RETURN_IF_ERROR(
      CheckShape("CausalAttention", "out", *out, rows, s.heads * dv));
  if (rows == 0) return absl::OkStatus();
  const float scale = s.scale > 0
                          ? static_cast<float>(s.scale)
                          : 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  CARE_RETURN_IF_ERROR(CheckLaunch(
      LaunchCausalAttention(q.data, k.data, v.data, out->data, s.windows,
                            s.seq_len, s.heads, s.kv_heads, s.head_dim, dv,
                            scale, ctx_->stream()),
      "CausalAttention", shape));
  // q·kᵀ and p·v over the T(T+1)/2 visible pairs, 2 flop per multiply-add.
  const double pairs = 0.5 * static_cast<double>(s.seq_len) * (s.seq_len + 1);
  ctx_->AddFlop(0, 2.0 * (s.head_dim + dv) * pairs * s.heads * s.windows);
  return absl::OkStatus();
}

absl::StatusOr<Routing> CudaBackend::RouteTopK(const Matrix& logits, int64_t k,
                                               bool renormalize) {
  const int64_t T = logits.rows, E = logits.cols;
  if (k < 1 || k > E) {
    return absl::InvalidArgumentError(
        absl::StrCat("RouteTopK: k = ", k, " is outside [1, ", E, "] (logits ",
                     ShapeOf(logits), ")"));
  }
  if (E > kMaxRouterExperts || k > 64) {
    return absl::UnimplementedError(
        absl::StrCat("RouteTopK on cuda: ", E, " experts / top ", k,
                     " exceed the limits ", kMaxRouterExperts, " / 64"));
  }
  Routing r;
  r.tokens = T;
  r.k = k;
  r.experts.resize(T * k);
  r.weights.resize(T * k);
  if (T == 0) return r;
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> ids,
                        ctx_->Allocate(sizeof(int32_t) * T * k, "RouteTopK"));
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> w,
                        ctx_->Allocate(sizeof(float) * T * k, "RouteTopK"));
  const std::string shape = absl::StrCat(ShapeOf(logits), " k ", k);
  CARE_RETURN_IF_ERROR(CheckLaunch(
      LaunchRouterTopK(logits.data, T, E, k, renormalize,
                       static_cast<int32_t*>(ids.get()),
                       static_cast<float*>(w.get()), ctx_->stream()),
      "RouteTopK", shape));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(r.experts.data(), ids.get(), sizeof(int32_t) * T * k,
                      cudaMemcpyDeviceToHost, ctx_->stream()),
      "RouteTopK download", shape));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(r.weights.data(), w.get(), sizeof(float) * T * k,
                      cudaMemcpyDeviceToHost, ctx_->stream()),
      "RouteTopK download", shape));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaStreamSynchronize(ctx_->stream()), "RouteTopK", shape));
  return r;
}

absl::StatusOr<Routing> CudaBackend::RouteGroupedTopK(const Matrix& logits,
                                                      const Matrix& bias,
                                                      const GroupedTopK& r) {
  CARE_RETURN_IF_ERROR(
      CheckShape("RouteGroupedTopK", "bias", bias, 1, logits.cols));
  // The decisions are wanted on the host anyway: bring [T, E] fp32 scores
  // over (T·E·4 bytes, small next to a layer's GEMMs) and apply the one
  // host implementation of the rule, so both backends route identically.
  std::vector<float> l(logits.size()), b(bias.size());
  CARE_RETURN_IF_ERROR(Download(logits, l.data()));
  CARE_RETURN_IF_ERROR(Download(bias, b.data()));
  return GroupedTopKOnHost(l.data(), logits.rows, logits.cols, b.data(), r);
}

absl::StatusOr<std::shared_ptr<void>> CudaBackend::UploadIds(
    const std::vector<int64_t>& ids, const char* op) {
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> d,
                        ctx_->Allocate(sizeof(int64_t) * ids.size(), op));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(d.get(), ids.data(), sizeof(int64_t) * ids.size(),
                      cudaMemcpyHostToDevice, ctx_->stream()),
      op, absl::StrCat("upload of ", ids.size(), " row ids")));
  return d;
}

absl::Status CudaBackend::GatherRows(const Matrix& x,
                                     const std::vector<int64_t>& rows,
                                     Matrix* out) {
  const int64_t n = rows.size();
  CARE_RETURN_IF_ERROR(CheckShape("GatherRows", "out", *out, n, x.cols));
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0 || rows[i] >= x.rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("GatherRows: row id ", rows[i], " at ", i,
                       " is outside [0, ", x.rows, ")"));
    }
  }
  if (n == 0 || x.cols == 0) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> ids,
                        UploadIds(rows, "GatherRows"));
  return CheckLaunch(
      LaunchGatherRows(x.data, static_cast<const int64_t*>(ids.get()), n,
                       x.cols, out->data, ctx_->stream()),
      "GatherRows", absl::StrCat(ShapeOf(x), " -> ", ShapeOf(*out)));
}

absl::Status CudaBackend::ScatterRows(const Matrix& x,
                                      const std::vector<int64_t>& rows,
                                      const std::vector<float>& scale,
                                      Matrix* out, bool accumulate) {
  const int64_t n = rows.size();
  CARE_RETURN_IF_ERROR(CheckShape("ScatterRows", "x", x, n, out->cols));
  if (!scale.empty() && static_cast<int64_t>(scale.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScatterRows: ", scale.size(), " scales for ", n, " rows"));
  }
  std::vector<bool> seen(out->rows, false);
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0 || rows[i] >= out->rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("ScatterRows: row id ", rows[i], " at ", i,
                       " is outside [0, ", out->rows, ")"));
    }
    if (seen[rows[i]]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ScatterRows: row id ", rows[i], " repeats (at ", i, ")"));
    }
    seen[rows[i]] = true;
  }
  if (n == 0 || x.cols == 0) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> ids,
                        UploadIds(rows, "ScatterRows"));
  std::shared_ptr<void> w;
  if (!scale.empty()) {
    CARE_ASSIGN_OR_RETURN(w, ctx_->Allocate(sizeof(float) * n, "ScatterRows"));
    CARE_RETURN_IF_ERROR(
        ctx_->Check(cudaMemcpyAsync(w.get(), scale.data(), sizeof(float) * n,
                                    cudaMemcpyHostToDevice, ctx_->stream()),
                    "ScatterRows", "upload of the scales"));
  }
  return CheckLaunch(
      LaunchScatterRows(x.data, static_cast<const int64_t*>(ids.get()),
                        static_cast<const float*>(w.get()), n, x.cols,
                        out->data, accumulate, ctx_->stream()),
      "ScatterRows", absl::StrCat(ShapeOf(x), " -> ", ShapeOf(*out)));
}

absl::Status CudaBackend::SumRowGroups(const Matrix& x, int64_t k, Matrix* y) {
  if (k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SumRowGroups: k = ", k, " must be >= 1"));
  }
  CARE_RETURN_IF_ERROR(
      CheckShape("SumRowGroups", "x", x, y->rows * k, y->cols));
  if (y->empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(
      LaunchSumRowGroups(x.data, y->rows, k, y->cols, y->data, ctx_->stream()),
      "SumRowGroups", absl::StrCat(ShapeOf(x), " k ", k, " -> ", ShapeOf(*y)));
}

absl::StatusOr<ScoreState> CudaBackend::ScoreBegin(
    const std::vector<int32_t>& targets) {
  const int64_t n = targets.size();
  for (int64_t s = 0; s < n; ++s) {
    if (targets[s] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ScoreBegin: target ", targets[s], " of row ", s, " is negative"));
    }
  }
  ScoreState state;
  state.rows = n;
  if (n == 0) return state;
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  auto b = std::make_shared<ScoreBuffers>();
  CARE_ASSIGN_OR_RETURN(b->run_max,
                        ctx_->Allocate(sizeof(float) * n, "ScoreBegin"));
  CARE_ASSIGN_OR_RETURN(b->run_sum,
                        ctx_->Allocate(sizeof(double) * n, "ScoreBegin"));
  CARE_ASSIGN_OR_RETURN(b->target_logit,
                        ctx_->Allocate(sizeof(double) * n, "ScoreBegin"));
  CARE_ASSIGN_OR_RETURN(b->targets,
                        ctx_->Allocate(sizeof(int32_t) * n, "ScoreBegin"));
  const std::string shape = absl::StrCat(n, " rows");
  CARE_RETURN_IF_ERROR(
      CheckLaunch(LaunchFill(static_cast<float*>(b->run_max.get()), -INFINITY,
                             n, ctx_->stream()),
                  "ScoreBegin", shape));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemsetAsync(b->run_sum.get(), 0, sizeof(double) * n, ctx_->stream()),
      "ScoreBegin", shape));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemsetAsync(b->target_logit.get(), 0, sizeof(double) * n,
                                  ctx_->stream()),
                  "ScoreBegin", shape));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(b->targets.get(), targets.data(), sizeof(int32_t) * n,
                      cudaMemcpyHostToDevice, ctx_->stream()),
      "ScoreBegin", shape));
  state.storage = std::move(b);
  return state;
}

absl::Status CudaBackend::ScoreChunk(const Matrix& logits, int64_t row0,
                                     int64_t v0, ScoreState* state) {
  if (row0 < 0 || v0 < 0 || row0 + logits.rows > state->rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("ScoreChunk: logits ", ShapeOf(logits), " at row ", row0,
                     " (vocabulary offset ", v0, ") do not fit a state of ",
                     state->rows, " rows"));
  }
  if (logits.empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  auto* b = static_cast<ScoreBuffers*>(state->storage.get());
  return CheckLaunch(
      LaunchLogSumExpChunk(logits.data, logits.rows, logits.cols, v0,
                           static_cast<const int32_t*>(b->targets.get()) + row0,
                           static_cast<float*>(b->run_max.get()) + row0,
                           static_cast<double*>(b->run_sum.get()) + row0,
                           static_cast<double*>(b->target_logit.get()) + row0,
                           ctx_->stream()),
      "ScoreChunk", absl::StrCat(ShapeOf(logits), " row0 ", row0, " v0 ", v0));
}

absl::StatusOr<std::vector<double>> CudaBackend::ScoreFinish(
    const ScoreState& state) {
  const int64_t n = state.rows;
  std::vector<double> nll(n);
  if (n == 0) return nll;
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  auto* b = static_cast<ScoreBuffers*>(state.storage.get());
  std::vector<float> m(n);
  std::vector<double> sum(n), tgt(n);
  const std::string shape = absl::StrCat(n, " rows");
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(m.data(), b->run_max.get(), sizeof(float) * n,
                                  cudaMemcpyDeviceToHost, ctx_->stream()),
                  "ScoreFinish", shape));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(sum.data(), b->run_sum.get(), sizeof(double) * n,
                      cudaMemcpyDeviceToHost, ctx_->stream()),
      "ScoreFinish", shape));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(tgt.data(), b->target_logit.get(), sizeof(double) * n,
                      cudaMemcpyDeviceToHost, ctx_->stream()),
      "ScoreFinish", shape));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaStreamSynchronize(ctx_->stream()), "ScoreFinish", shape));
  for (int64_t s = 0; s < n; ++s) nll[s] = m[s] + std::log(sum[s]) - tgt[s];
  return nll;
}

}  // namespace care::compute::cuda
