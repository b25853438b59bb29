// carectl list: jobs newest first, filtered by state and label, one page or
// (--all) every page.
#include <iostream>

#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "client/command_support.h"
#include "client/spec_flags.h"

namespace care::client {

int RunList(const std::vector<std::string>& args) {
  std::vector<std::string> rest = args;
  auto labels = ExtractRepeated(rest, "label");
  if (!labels.ok()) return UsageError("list", labels.status());
  auto states = ExtractRepeated(rest, "state");
  if (!states.ok()) return UsageError("list", states.status());
  auto setup = SetupCommand(rest, {"page-size", "page-token"}, {"all"});
  if (!setup.ok()) return UsageError("list", setup.status());
  const Flags& flags = setup->flags;
  if (!flags.positionals().empty()) {
    return UsageError(
        "list", absl::InvalidArgumentError(absl::StrCat(
                    "unexpected argument '", flags.positionals()[0], "'")));
  }

  care::v1::ListJobsRequest request;
  for (const std::string& list : *states) {
    for (absl::string_view name :
         absl::StrSplit(list, ',', absl::SkipWhitespace())) {
      auto state = ParseState(name);
      if (!state.ok()) return UsageError("list", state.status());
      request.add_states(*state);
    }
  }
  for (const std::string& label : *labels) {
    auto kv = ParseLabel(label, "label");
    if (!kv.ok()) return UsageError("list", kv.status());
    (*request.mutable_labels())[kv->first] = kv->second;
  }
  auto page_size = flags.IntOr("page-size", 0);
  if (!page_size.ok()) return UsageError("list", page_size.status());
  if (*page_size < 0 || *page_size > 1000) {
    return UsageError("list", absl::InvalidArgumentError(absl::StrCat(
                                  "flag --page-size: must be in [1, 1000], "
                                  "got ",
                                  *page_size)));
  }
  request.set_page_size(static_cast<int32_t>(*page_size));
  request.set_page_token(flags.StringOr("page-token", ""));

  Connection& connection = *setup->connection;
  care::v1::ListJobsResponse all;
  const bool every_page = flags.Bool("all");
  while (true) {
    care::v1::ListJobsResponse page;
    auto context = connection.NewContext(/*streaming=*/false);
    grpc::Status status =
        connection.stub().ListJobs(context.get(), request, &page);
    if (!status.ok()) {
      std::cerr << connection.Describe("list", status) << "\n";
      return ExitCodeFor(status);
    }
    for (auto& job : *page.mutable_jobs()) *all.add_jobs() = std::move(job);
    all.set_next_page_token(page.next_page_token());
    // A token equal to the one sent would loop forever: stop instead.
    if (!every_page || page.next_page_token().empty() ||
        page.next_page_token() == request.page_token()) {
      break;
    }
    request.set_page_token(page.next_page_token());
  }
  if (every_page) all.clear_next_page_token();
  if (setup->output == OutputFormat::kJson) {
    std::cout << ToJson(all, /*pretty=*/true) << "\n";
  } else {
    std::cout << FormatJobListTable(all);
    if (!all.next_page_token().empty()) {
      std::cerr << "more jobs: --page-token " << all.next_page_token()
                << " (or --all)\n";
    }
  }
  return kExitOk;
}

}  // namespace care::client
