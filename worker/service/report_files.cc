#include "service/report_files.h"

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "proto/api/report_limits.h"

namespace care::worker {
namespace {

// The file's bytes, or an explanation of why not.
bool ReadSmallFile(const std::filesystem::path& path, std::string* out,
                   std::string* why) {
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  if (error) {
    *why = absl::StrCat(path.string(), ": ", error.message());
    return false;
  }
  if (size > care::api::kMaxReportFileBytes) {
    *why = absl::StrCat(path.string(), ": ", size, " bytes, over the limit of ",
                        care::api::kMaxReportFileBytes, " (not sent)");
    return false;
  }
  absl::StatusOr<std::string> text = care::ReadFileToString(path.string());
  if (!text.ok()) {
    *why = std::string(text.status().message());
    return false;
  }
  *out = *std::move(text);
  if (out->size() > care::api::kMaxReportFileBytes) {  // grew meanwhile
    out->clear();
    *why = absl::StrCat(path.string(), ": over the size limit (not sent)");
    return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> AttachReportFiles(
    const care::v1::Report& report, care::v1::CompleteJobRequest* request) {
  std::vector<std::string> problems;
  std::string dir = report.output_uri();
  if (absl::StartsWith(dir, "file://")) dir = dir.substr(7);
  if (dir.empty()) return {"the report names no output directory"};
  std::string why;
  if (!ReadSmallFile(std::filesystem::path(dir) / "care_report.json",
                     request->mutable_report_json(), &why)) {
    problems.push_back(why);
  }
  if (!ReadSmallFile(std::filesystem::path(dir) / "care_report.html",
                     request->mutable_report_html(), &why)) {
    problems.push_back(why);
  }
  return problems;
}

}  // namespace care::worker
