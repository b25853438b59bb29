// Byte codec of the resume state's records (mla_resume.h, heal_resume.h):
// little-endian host-order fields, like the other state files (state never
// leaves the machine family that wrote it). The reader checks every count
// against what is left, so a truncated or corrupt record is DataLoss, never
// an out-of-bounds read or a huge allocation.
#ifndef CARE_CONVERT_MLA_EXPORT_RECORD_CODEC_H_
#define CARE_CONVERT_MLA_EXPORT_RECORD_CODEC_H_

#include <Eigen/Core>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "care/io/tensor.h"

namespace care::convert::mla {

class Writer {
 public:
  void Raw(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);
  }
  void I64(int64_t v) { Raw(&v, sizeof(v)); }
  void F64(double v) { Raw(&v, sizeof(v)); }
  void Str(const std::string& s) {
    I64(static_cast<int64_t>(s.size()));
    Raw(s.data(), s.size());
  }
  void MatD(const Eigen::MatrixXd& m) {  // column-major
    I64(m.rows());
    I64(m.cols());
    Raw(m.data(), sizeof(double) * m.size());
  }
  void MatF(const MatrixRM& m) {  // row-major
    I64(m.rows());
    I64(m.cols());
    Raw(m.data(), sizeof(float) * m.size());
  }
  void VecF(const Eigen::VectorXf& v) {
    I64(v.size());
    Raw(v.data(), sizeof(float) * v.size());
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  absl::Status Raw(void* p, size_t n) {
    if (n > in_.size()) return absl::DataLossError("layer record ends early");
    std::memcpy(p, in_.data(), n);
    in_.remove_prefix(n);
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> I64() {
    int64_t v = 0;
    CARE_RETURN_IF_ERROR(Raw(&v, sizeof(v)));
    return v;
  }
  absl::StatusOr<double> F64() {
    double v = 0;
    CARE_RETURN_IF_ERROR(Raw(&v, sizeof(v)));
    return v;
  }
  absl::StatusOr<std::string> Str() {
    CARE_ASSIGN_OR_RETURN(int64_t n, Size(1));
    std::string s(static_cast<size_t>(n), '\0');
    CARE_RETURN_IF_ERROR(Raw(s.data(), s.size()));
    return s;
  }
  absl::StatusOr<Eigen::MatrixXd> MatD() {
    CARE_ASSIGN_OR_RETURN(int64_t r, Size(0));
    CARE_ASSIGN_OR_RETURN(int64_t c, Size(0));
    CARE_RETURN_IF_ERROR(Fits(r, c, sizeof(double)));
    Eigen::MatrixXd m(r, c);
    CARE_RETURN_IF_ERROR(Raw(m.data(), sizeof(double) * m.size()));
    return m;
  }
  absl::StatusOr<MatrixRM> MatF() {
    CARE_ASSIGN_OR_RETURN(int64_t r, Size(0));
    CARE_ASSIGN_OR_RETURN(int64_t c, Size(0));
    CARE_RETURN_IF_ERROR(Fits(r, c, sizeof(float)));
    MatrixRM m(r, c);
    CARE_RETURN_IF_ERROR(Raw(m.data(), sizeof(float) * m.size()));
    return m;
  }
  absl::StatusOr<Eigen::VectorXf> VecF() {
    CARE_ASSIGN_OR_RETURN(int64_t n, Size(sizeof(float)));
    Eigen::VectorXf v(n);
    CARE_RETURN_IF_ERROR(Raw(v.data(), sizeof(float) * v.size()));
    return v;
  }
  bool done() const { return in_.empty(); }

 private:
  // A count, checked against what is left (`element` bytes each).
  absl::StatusOr<int64_t> Size(size_t element) {
    CARE_ASSIGN_OR_RETURN(int64_t n, I64());
    if (n < 0 ||
        (element > 0 && static_cast<uint64_t>(n) > in_.size() / element)) {
      return absl::DataLossError(absl::StrCat("bad size ", n));
    }
    return n;
  }
  absl::Status Fits(int64_t r, int64_t c, size_t element) {
    if (c != 0 && static_cast<uint64_t>(r) > in_.size() / element / c) {
      return absl::DataLossError(
          absl::StrCat("matrix [", r, ", ", c, "] exceeds the record"));
    }
    return absl::OkStatus();
  }
  absl::string_view in_;
};

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_RECORD_CODEC_H_
