// carectl report JOB_ID [--html FILE] [--json]: the full report the server
// stored for a succeeded job — the self-contained HTML page and the JSON
// (care_report.html / care_report.json of its output).
#include <fstream>
#include <iostream>

#include "client/cli.h"
#include "client/command_support.h"

namespace care::client {
namespace {

// Writes `bytes` to `path` ("-": stdout); false with a message on failure.
bool WriteOut(const std::string& path, const std::string& bytes) {
  if (path == "-") {
    std::cout << bytes << std::flush;
    return static_cast<bool>(std::cout);
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  out.close();
  if (!out) {
    std::cerr << "carectl report: cannot write " << path << "\n";
    return false;
  }
  return true;
}

}  // namespace

int RunReport(const std::vector<std::string>& args) {
  auto setup = SetupCommand(args, {"html"}, {"json"});
  if (!setup.ok()) return UsageError("report", setup.status());
  const auto& ids = setup->flags.positionals();
  if (ids.size() != 1) {
    return UsageError(
        "report", absl::InvalidArgumentError(
                      ids.empty() ? "missing JOB_ID" : "one JOB_ID at a time"));
  }
  const bool json = setup->flags.Bool("json");
  std::string html = setup->flags.StringOr("html", "");
  if (html.empty() && !json) html = ids[0] + ".html";
  if (html == "-" && json) {
    return UsageError("report", absl::InvalidArgumentError(
                                    "--html - and --json both write to "
                                    "stdout; give --html a file"));
  }
  Connection& connection = *setup->connection;
  care::v1::GetJobReportRequest request;
  request.set_job_id(ids[0]);
  request.set_json_only(html.empty());
  care::v1::JobReport report;
  auto context = connection.NewContext(/*streaming=*/false);
  grpc::Status status =
      connection.stub().GetJobReport(context.get(), request, &report);
  if (!status.ok()) {
    std::cerr << connection.Describe(absl::StrCat("report ", ids[0]), status)
              << "\n";
    return ExitCodeFor(status);
  }
  if (!html.empty()) {
    if (report.report_html().empty()) {
      std::cerr << "carectl report: job " << ids[0]
                << " has no HTML report stored\n";
      return kExitFailed;
    }
    if (!WriteOut(html, report.report_html())) return kExitFailed;
    if (html != "-" && !json) {
      std::cout << "wrote " << html << " (" << report.report_html().size()
                << " bytes)\n";
    }
  }
  if (json && !WriteOut("-", report.report_json())) return kExitFailed;
  return kExitOk;
}

}  // namespace care::client
