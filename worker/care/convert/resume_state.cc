#include "care/convert/resume_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "care/engine/engine.h"
#include "care/io/file_util.h"
#include "care/io/sha256.h"

namespace care::convert {
namespace {

// File layout: header | payload. The header is fixed-size, little-endian
// host order (state never leaves the machine family that wrote it).
constexpr char kMagic[8] = {'C', 'A', 'R', 'E', 'R', 'S', 'M', '1'};
constexpr uint32_t kVersion = 1;
enum Kind : uint32_t { kLayer = 1, kHidden = 2, kValues = 3, kBlob = 4 };

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t kind;
  uint64_t payload_bytes;
  char sha256[64];  // hex digest of the payload
};
static_assert(sizeof(Header) == 88);

// Sibling state directories older than this are abandoned and pruned.
constexpr auto kStaleAge = std::chrono::hours(24 * 7);

std::string TmpSuffix() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  return absl::StrFormat(".tmp.%d.%x.%d", ::getpid(), salt, counter++);
}

// Streams a payload to a temporary file, then fills in the header and
// renames it into place.
class RecordWriter {
 public:
  RecordWriter(std::string path, Kind kind)
      : path_(std::move(path)), tmp_(path_ + TmpSuffix()), kind_(kind) {}
  ~RecordWriter() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }

  absl::Status Open() {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) return io::ErrnoStatus(errno, "cannot create", tmp_);
    Header blank{};
    return io::WriteAll(fd_, &blank, sizeof(blank), tmp_);
  }
  absl::Status Bytes(const void* data, size_t size) {
    if (size == 0) return absl::OkStatus();
    sha_.Update(absl::string_view(static_cast<const char*>(data), size));
    bytes_ += size;
    return io::WriteAll(fd_, data, size, tmp_);
  }
  absl::Status I64(int64_t v) { return Bytes(&v, sizeof(v)); }
  absl::Status F64(double v) { return Bytes(&v, sizeof(v)); }
  absl::Status Str(const std::string& s) {
    CARE_RETURN_IF_ERROR(I64(static_cast<int64_t>(s.size())));
    return Bytes(s.data(), s.size());
  }
  absl::Status Vector(const Eigen::VectorXd& v) {
    CARE_RETURN_IF_ERROR(I64(v.size()));
    return Bytes(v.data(), sizeof(double) * v.size());
  }
  absl::Status Matrix(const Eigen::MatrixXd& m) {  // column-major
    CARE_RETURN_IF_ERROR(I64(m.rows()));
    CARE_RETURN_IF_ERROR(I64(m.cols()));
    return Bytes(m.data(), sizeof(double) * m.size());
  }
  absl::Status MatrixF(const MatrixRM& m) {  // row-major float32
    CARE_RETURN_IF_ERROR(I64(m.rows()));
    CARE_RETURN_IF_ERROR(I64(m.cols()));
    return Bytes(m.data(), sizeof(float) * m.size());
  }

  // Header, fsync, rename, fsync of the directory.
  absl::Status Commit() {
    Header h{};
    std::memcpy(h.magic, kMagic, sizeof(kMagic));
    h.version = kVersion;
    h.kind = kind_;
    h.payload_bytes = bytes_;
    const std::string digest = sha_.HexDigest();
    std::memcpy(h.sha256, digest.data(), sizeof(h.sha256));
    if (::pwrite(fd_, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h))) {
      return io::ErrnoStatus(errno, "cannot write", tmp_);
    }
    const int fd = fd_;
    fd_ = -1;
    return io::CommitFile(fd, tmp_, path_);
  }

 private:
  std::string path_, tmp_;
  Kind kind_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  io::Sha256 sha_;
};

// Reads a payload with bounds checks; Finish() verifies size and checksum.
// Any failure is DataLoss naming the file.
class RecordReader {
 public:
  explicit RecordReader(std::string path) : path_(std::move(path)) {}
  ~RecordReader() {
    if (fd_ >= 0) ::close(fd_);
  }

  // NotFound when the file does not exist.
  absl::Status Open(Kind kind) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      return errno == ENOENT ? absl::NotFoundError(path_)
                             : io::ErrnoStatus(errno, "cannot open", path_);
    }
    Header h{};
    if (::pread(fd_, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h))) {
      return Bad("shorter than its header");
    }
    if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
      return Bad("bad magic");
    }
    if (h.version != kVersion) {
      return Bad(absl::StrCat("version ", h.version, ", expected ", kVersion));
    }
    if (h.kind != kind) return Bad(absl::StrCat("kind ", h.kind));
    const off_t size = ::lseek(fd_, 0, SEEK_END);
    if (size < 0 ||
        static_cast<uint64_t>(size) != sizeof(h) + h.payload_bytes) {
      return Bad(absl::StrCat("size ", size, " != header ", sizeof(h),
                              " + payload ", h.payload_bytes, " (torn write)"));
    }
    if (::lseek(fd_, sizeof(h), SEEK_SET) < 0) return Bad("cannot seek");
    remaining_ = h.payload_bytes;
    expected_.assign(h.sha256, sizeof(h.sha256));
    return absl::OkStatus();
  }

  absl::Status Bytes(void* out, size_t size) {
    if (size > remaining_) return Bad("payload ends early");
    char* p = static_cast<char*>(out);
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::read(fd_, p + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Bad("read failed");
      done += static_cast<size_t>(n);
    }
    sha_.Update(absl::string_view(p, size));
    remaining_ -= size;
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> I64() {
    int64_t v = 0;
    CARE_RETURN_IF_ERROR(Bytes(&v, sizeof(v)));
    return v;
  }
  absl::StatusOr<double> F64() {
    double v = 0;
    CARE_RETURN_IF_ERROR(Bytes(&v, sizeof(v)));
    return v;
  }
  absl::StatusOr<std::string> Str() {
    CARE_ASSIGN_OR_RETURN(int64_t n, I64());
    if (n < 0 || static_cast<uint64_t>(n) > remaining_) return Bad("string");
    std::string s(static_cast<size_t>(n), '\0');
    CARE_RETURN_IF_ERROR(Bytes(s.data(), s.size()));
    return s;
  }
  absl::StatusOr<Eigen::VectorXd> Vector(int64_t max_size) {
    CARE_ASSIGN_OR_RETURN(int64_t n, I64());
    if (n < 0 || n > max_size) return Bad(absl::StrCat("vector size ", n));
    Eigen::VectorXd v(n);
    CARE_RETURN_IF_ERROR(Bytes(v.data(), sizeof(double) * n));
    return v;
  }
  // Exactly [rows, cols] (a negative expectation accepts any size that
  // fits the payload).
  absl::StatusOr<Eigen::MatrixXd> Matrix(int64_t rows, int64_t cols) {
    CARE_ASSIGN_OR_RETURN(auto shape, Shape(rows, cols, sizeof(double)));
    Eigen::MatrixXd m(shape.first, shape.second);
    CARE_RETURN_IF_ERROR(Bytes(m.data(), sizeof(double) * m.size()));
    return m;
  }
  absl::StatusOr<MatrixRM> MatrixF(int64_t rows, int64_t cols) {
    CARE_ASSIGN_OR_RETURN(auto shape, Shape(rows, cols, sizeof(float)));
    MatrixRM m(shape.first, shape.second);
    CARE_RETURN_IF_ERROR(Bytes(m.data(), sizeof(float) * m.size()));
    return m;
  }

  absl::Status Finish() {
    if (remaining_ != 0) return Bad("trailing bytes");
    if (sha_.HexDigest() != expected_) return Bad("checksum mismatch");
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::pair<int64_t, int64_t>> Shape(int64_t rows, int64_t cols,
                                                    size_t element) {
    CARE_ASSIGN_OR_RETURN(int64_t r, I64());
    CARE_ASSIGN_OR_RETURN(int64_t c, I64());
    if (r < 0 || c < 0 || (rows >= 0 && r != rows) ||
        (cols >= 0 && c != cols)) {
      return Bad(absl::StrCat("matrix [", r, ", ", c, "], expected [", rows,
                              ", ", cols, "]"));
    }
    if (c != 0 && static_cast<uint64_t>(r) > remaining_ / element / c) {
      return Bad(absl::StrCat("matrix [", r, ", ", c, "] exceeds the payload"));
    }
    return std::make_pair(r, c);
  }
  absl::Status Bad(absl::string_view why) const {
    return absl::DataLossError(absl::StrCat(path_, ": ", why));
  }

  std::string path_;
  int fd_ = -1;
  uint64_t remaining_ = 0;
  std::string expected_;
  io::Sha256 sha_;
};

absl::Status WriteDecomposition(RecordWriter& w, const Decomposition& d) {
  CARE_RETURN_IF_ERROR(w.Vector(d.singular_values));
  return w.Matrix(d.right_vectors);
}

absl::StatusOr<Decomposition> ReadDecomposition(RecordReader& r,
                                                int64_t kv_width) {
  Decomposition d;
  CARE_ASSIGN_OR_RETURN(d.singular_values, r.Vector(kv_width));
  CARE_ASSIGN_OR_RETURN(d.right_vectors,
                        r.Matrix(kv_width, d.singular_values.size()));
  return d;
}

bool IsHexFingerprint(const std::string& name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Removes sibling fingerprint directories whose newest entry is older than
// kStaleAge, and temporary files of dead writers in `dir`.
void Prune(const std::string& root, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (!IsHexFingerprint(name) || entry.path() == fs::path(dir)) continue;
    auto newest = fs::last_write_time(entry.path(), ec);
    for (const auto& f : fs::directory_iterator(entry.path(), ec)) {
      newest = std::max(newest, fs::last_write_time(f.path(), ec));
    }
    if (!ec && now - newest > kStaleAge) {
      ResumeLog(absl::StrCat("removing stale state ", entry.path().string()));
      fs::remove_all(entry.path(), ec);
    }
  }
  // A writer killed mid-file leaves its temporary behind; one older than an
  // hour is dead (a live writer renames within seconds).
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    if (f.path().filename().string().find(".tmp.") != std::string::npos &&
        now - fs::last_write_time(f.path(), ec) > std::chrono::hours(1)) {
      fs::remove(f.path(), ec);
    }
  }
}

}  // namespace

void ResumeLog(absl::string_view message) {
  std::cerr << "care: resume: " << message << "\n";
}

void SaveValuesOrLog(ResumeState* state, const std::string& name,
                     const std::vector<double>& values) {
  if (state == nullptr) return;
  absl::Status saved = state->SaveValues(name, values);
  if (!saved.ok()) ResumeLog(saved.message());
}

absl::StatusOr<std::unique_ptr<ResumeState>> ResumeState::Open(
    const std::string& root, const std::string& fingerprint) {
  if (!IsHexFingerprint(fingerprint)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resume fingerprint '", fingerprint, "' is not 64 hex digits"));
  }
  const std::string dir = root + "/" + fingerprint;
  CARE_RETURN_IF_ERROR(io::MakeDirs(dir));
  Prune(root, dir);
  return std::unique_ptr<ResumeState>(new ResumeState(dir));
}

std::string ResumeState::Path(absl::string_view name) const {
  return absl::StrCat(dir_, "/", name);
}

absl::Status ResumeState::SaveLayer(int64_t layer, const LayerDecomposition& d,
                                    const LayerGrams& g) {
  RecordWriter w(Path(absl::StrFormat("layer-%05d.bin", layer)), kLayer);
  CARE_RETURN_IF_ERROR(w.Open());
  CARE_RETURN_IF_ERROR(w.I64(layer));
  CARE_RETURN_IF_ERROR(WriteDecomposition(w, d.k));
  CARE_RETURN_IF_ERROR(WriteDecomposition(w, d.v));
  const ScalingInfo& s = d.scaling;
  CARE_RETURN_IF_ERROR(w.F64(s.damping_added));
  CARE_RETURN_IF_ERROR(w.F64(s.jitter_added));
  CARE_RETURN_IF_ERROR(w.I64(s.clamped_eigenvalues));
  CARE_RETURN_IF_ERROR(w.I64(s.zero_channels));
  CARE_RETURN_IF_ERROR(w.I64(s.identity_fallback ? 1 : 0));
  CARE_RETURN_IF_ERROR(w.Str(s.note));
  for (const Eigen::MatrixXd* m :
       {&g.calib_k, &g.calib_v, &g.heldout_k, &g.heldout_v}) {
    CARE_RETURN_IF_ERROR(w.Matrix(*m));
  }
  return w.Commit();
}

std::optional<SavedLayer> ResumeState::LoadLayer(int64_t layer,
                                                 int64_t kv_width) const {
  RecordReader r(Path(absl::StrFormat("layer-%05d.bin", layer)));
  auto read = [&]() -> absl::StatusOr<SavedLayer> {
    CARE_RETURN_IF_ERROR(r.Open(kLayer));
    SavedLayer out;
    CARE_ASSIGN_OR_RETURN(int64_t index, r.I64());
    if (index != layer) {
      return absl::DataLossError(absl::StrCat("holds layer ", index));
    }
    LayerDecomposition& d = out.decomposition;
    CARE_ASSIGN_OR_RETURN(d.k, ReadDecomposition(r, kv_width));
    CARE_ASSIGN_OR_RETURN(d.v, ReadDecomposition(r, kv_width));
    ScalingInfo& s = d.scaling;
    CARE_ASSIGN_OR_RETURN(s.damping_added, r.F64());
    CARE_ASSIGN_OR_RETURN(s.jitter_added, r.F64());
    CARE_ASSIGN_OR_RETURN(s.clamped_eigenvalues, r.I64());
    CARE_ASSIGN_OR_RETURN(s.zero_channels, r.I64());
    CARE_ASSIGN_OR_RETURN(int64_t fallback, r.I64());
    s.identity_fallback = fallback != 0;
    CARE_ASSIGN_OR_RETURN(s.note, r.Str());
    LayerGrams& g = out.grams;
    for (Eigen::MatrixXd* m : {&g.calib_k, &g.calib_v}) {
      CARE_ASSIGN_OR_RETURN(*m, r.Matrix(kv_width, kv_width));
    }
    // Empty when the pass had no held-out windows (not needed by the job).
    for (Eigen::MatrixXd* m : {&g.heldout_k, &g.heldout_v}) {
      CARE_ASSIGN_OR_RETURN(*m, r.Matrix(-1, -1));
      if (m->size() != 0 && (m->rows() != kv_width || m->cols() != kv_width)) {
        return absl::DataLossError(absl::StrCat(
            "held-out Gram [", m->rows(), ", ", m->cols(), "], expected [",
            kv_width, ", ", kv_width, "] or empty"));
      }
    }
    CARE_RETURN_IF_ERROR(r.Finish());
    return out;
  };
  absl::StatusOr<SavedLayer> out = read();
  if (!out.ok()) {
    if (!absl::IsNotFound(out.status())) {
      ResumeLog(absl::StrCat("ignoring layer ", layer,
                             " state: ", out.status().message()));
    }
    return std::nullopt;
  }
  return *std::move(out);
}

absl::Status ResumeState::SaveHidden(int64_t next_layer,
                                     const MatrixRM& hidden) {
  RecordWriter w(Path("hidden.bin"), kHidden);
  CARE_RETURN_IF_ERROR(w.Open());
  CARE_RETURN_IF_ERROR(w.I64(next_layer));
  CARE_RETURN_IF_ERROR(w.MatrixF(hidden));
  return w.Commit();
}

std::optional<SavedHidden> ResumeState::LoadHidden(int64_t tokens,
                                                   int64_t dim) const {
  RecordReader r(Path("hidden.bin"));
  auto read = [&]() -> absl::StatusOr<SavedHidden> {
    CARE_RETURN_IF_ERROR(r.Open(kHidden));
    SavedHidden out;
    CARE_ASSIGN_OR_RETURN(out.next_layer, r.I64());
    CARE_ASSIGN_OR_RETURN(out.hidden, r.MatrixF(tokens, dim));
    CARE_RETURN_IF_ERROR(r.Finish());
    return out;
  };
  absl::StatusOr<SavedHidden> out = read();
  if (!out.ok()) {
    if (!absl::IsNotFound(out.status())) {
      ResumeLog(absl::StrCat("ignoring hidden-state snapshot: ",
                             out.status().message()));
    }
    return std::nullopt;
  }
  return *std::move(out);
}

void ResumeState::DropHidden() { ::unlink(Path("hidden.bin").c_str()); }

absl::Status ResumeState::SaveValues(const std::string& name,
                                     const std::vector<double>& values) {
  RecordWriter w(Path(name + ".bin"), kValues);
  CARE_RETURN_IF_ERROR(w.Open());
  CARE_RETURN_IF_ERROR(w.Str(name));
  CARE_RETURN_IF_ERROR(w.I64(static_cast<int64_t>(values.size())));
  CARE_RETURN_IF_ERROR(w.Bytes(values.data(), sizeof(double) * values.size()));
  return w.Commit();
}

std::optional<std::vector<double>> ResumeState::LoadValues(
    const std::string& name, size_t count) const {
  RecordReader r(Path(name + ".bin"));
  auto read = [&]() -> absl::StatusOr<std::vector<double>> {
    CARE_RETURN_IF_ERROR(r.Open(kValues));
    CARE_ASSIGN_OR_RETURN(std::string stored, r.Str());
    CARE_ASSIGN_OR_RETURN(int64_t n, r.I64());
    if (stored != name || n != static_cast<int64_t>(count)) {
      return absl::DataLossError(
          absl::StrCat("holds '", stored, "' with ", n, " values"));
    }
    std::vector<double> values(count);
    CARE_RETURN_IF_ERROR(r.Bytes(values.data(), sizeof(double) * count));
    CARE_RETURN_IF_ERROR(r.Finish());
    return values;
  };
  absl::StatusOr<std::vector<double>> out = read();
  if (!out.ok()) {
    if (!absl::IsNotFound(out.status())) {
      ResumeLog(absl::StrCat("ignoring ", name, ": ", out.status().message()));
    }
    return std::nullopt;
  }
  return *std::move(out);
}

absl::Status ResumeState::SaveBlob(const std::string& name,
                                   const std::string& bytes) {
  RecordWriter w(Path(name + ".bin"), kBlob);
  CARE_RETURN_IF_ERROR(w.Open());
  CARE_RETURN_IF_ERROR(w.Str(name));
  CARE_RETURN_IF_ERROR(w.Str(bytes));
  return w.Commit();
}

std::optional<std::string> ResumeState::LoadBlob(
    const std::string& name) const {
  RecordReader r(Path(name + ".bin"));
  auto read = [&]() -> absl::StatusOr<std::string> {
    CARE_RETURN_IF_ERROR(r.Open(kBlob));
    CARE_ASSIGN_OR_RETURN(std::string stored, r.Str());
    if (stored != name) {
      return absl::DataLossError(absl::StrCat("holds '", stored, "'"));
    }
    CARE_ASSIGN_OR_RETURN(std::string bytes, r.Str());
    CARE_RETURN_IF_ERROR(r.Finish());
    return bytes;
  };
  absl::StatusOr<std::string> out = read();
  if (!out.ok()) {
    if (!absl::IsNotFound(out.status())) {
      ResumeLog(absl::StrCat("ignoring ", name, ": ", out.status().message()));
    }
    return std::nullopt;
  }
  return *std::move(out);
}

void ResumeState::Remove() { io::RemoveTree(dir_); }

void AddHiddenSnapshots(engine::LayerHooks& hooks, ResumeState& state,
                        int64_t layers, compute::Backend& backend) {
  using Clock = std::chrono::steady_clock;
  struct Policy {
    bool any = false;
    Clock::time_point last_end;
    Clock::duration last_cost{};
  };
  hooks.on_layer_output =
      [inner = std::move(hooks.on_layer_output), &state, layers, &backend,
       policy = Policy()](int64_t l, const auto& h) mutable -> absl::Status {
    absl::Status status = inner ? inner(l, h) : absl::OkStatus();
    const auto now = Clock::now();
    const bool due =
        l + 1 < layers &&
        (!policy.any || now - policy.last_end >= 10 * policy.last_cost);
    if ((status.ok() && due) || absl::IsCancelled(status)) {
      absl::StatusOr<MatrixRM> host = engine::DownloadMatrix(backend, h);
      absl::Status saved =
          host.ok() ? state.SaveHidden(l + 1, *host) : host.status();
      if (!saved.ok()) {
        ResumeLog(absl::StrCat("cannot snapshot the hidden states after layer ",
                               l, ": ", saved.message()));
      }
      policy.any = true;
      policy.last_end = Clock::now();
      policy.last_cost = policy.last_end - now;
    }
    return status;
  };
}

}  // namespace care::convert
