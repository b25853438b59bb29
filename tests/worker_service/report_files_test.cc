// AttachReportFiles: the output's care_report.json / .html go into the
// CompleteJob request as written; missing or oversized files are left out
// with a reason, never failing the job.
#include "service/report_files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "proto/api/report_limits.h"
#include "support/fixtures.h"

namespace care::worker {
namespace {

void Write(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

TEST(ReportFilesTest, AttachesBothFilesByteForByte) {
  const std::string dir = care::testing::MakeTempDir("report-files");
  const std::string json = "{\"x\": 1}\n";
  const std::string html = std::string("<html>\0\xff</html>", 15);
  Write(std::filesystem::path(dir) / "care_report.json", json);
  Write(std::filesystem::path(dir) / "care_report.html", html);
  care::v1::Report report;
  report.set_output_uri("file://" + dir);
  care::v1::CompleteJobRequest request;
  EXPECT_TRUE(AttachReportFiles(report, &request).empty());
  EXPECT_EQ(request.report_json(), json);
  EXPECT_EQ(request.report_html(), html);
  std::filesystem::remove_all(dir);
}

TEST(ReportFilesTest, MissingAndOversizedFilesLeftOut) {
  const std::string dir = care::testing::MakeTempDir("report-files");
  Write(std::filesystem::path(dir) / "care_report.json", "{}");
  {
    // Sparse: one byte over the limit without writing 4 MiB.
    std::ofstream out(std::filesystem::path(dir) / "care_report.html");
  }
  std::filesystem::resize_file(std::filesystem::path(dir) / "care_report.html",
                               care::api::kMaxReportFileBytes + 1);
  care::v1::Report report;
  report.set_output_uri(dir);
  care::v1::CompleteJobRequest request;
  auto problems = AttachReportFiles(report, &request);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("care_report.html"), std::string::npos);
  EXPECT_NE(problems[0].find("over the limit"), std::string::npos);
  EXPECT_EQ(request.report_json(), "{}");
  EXPECT_TRUE(request.report_html().empty());

  report.set_output_uri(dir + "/nonexistent");
  care::v1::CompleteJobRequest none;
  EXPECT_EQ(AttachReportFiles(report, &none).size(), 2u);
  EXPECT_TRUE(none.report_json().empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace care::worker
