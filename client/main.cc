// carectl: the command-line client of care-server (docs/carectl.md).
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "client/cli.h"
#include "client/command_support.h"

namespace {

using care::client::kExitUsage;

struct Subcommand {
  const char* name;
  const char* summary;
  const char* usage;
  int (*run)(const std::vector<std::string>&);
};

constexpr char kConnectionFlags[] =
    "\nconnection flags (every command):\n"
    "  --server HOST:PORT   care-server address ($CARE_SERVER, default "
    "127.0.0.1:50051)\n"
    "  --token-file FILE    client bearer token file ($CARE_TOKEN_FILE)\n"
    "  --token TOKEN        client bearer token ($CARE_TOKEN)\n"
    "  --tls                use TLS with the system roots\n"
    "  --tls-ca FILE        use TLS trusting these PEM roots\n"
    "  --tls-server-name N  name expected in the server certificate\n"
    "  --timeout SECONDS    per-request deadline (default 30)\n"
    "  --output table|json  output format (default table)\n";

const Subcommand kSubcommands[] = {
    {"submit", "submit a conversion job",
     "usage: carectl submit [-f|--spec FILE] [spec flags] [--wait] [--quiet]\n"
     "spec flags (override the fields of FILE, a YAML or JSON JobSpec):\n"
     "  --model URI           source checkpoint (path, file://, hf://)\n"
     "  --out PATH            output directory (must not exist)\n"
     "  --kv-save F | --rank R  KV budget: fraction saved in [0,1) or "
     "rank per matrix\n"
     "  --method care|care-c|asvd|svd|pca   --allocation "
     "uniform|adjusted|auto\n"
     "  --layout latent|deepseek-v3  --rope-dim R|auto  --freqfold K|auto\n"
     "  --kv-lora-rank N (deepseek-v3, instead of a budget)  "
     "--no-kv-balance\n"
     "  --heal local|none  --heal-data URI  --heal-tokens N  --heal-steps N\n"
     "  --heal-inputs original|healed (deepseek-v3: layer-wise healing)\n"
     "  --calib URI  --calib-samples N  --calib-seq-len N  --seed N\n"
     "  --calib-text-field F  --sequential\n"
     "  --eval URI  --eval-seq-len N  --eval-windows N  --eval-text-field F"
     "  --eval-bos\n"
     "  --damping F  --dtype same|f32|f16|bf16  --device any|cpu|cuda\n"
     "  --label K=V (repeatable)  --priority N  --request-id ID  "
     "--max-attempts N\n"
     "  --wait     watch the job; exit code mirrors its outcome\n"
     "  --quiet    print only the job id\n"
     "  --plain    with --wait: plain lines even on a terminal\n",
     care::client::RunSubmit},
    {"get", "show jobs", "usage: carectl get JOB_ID...\n",
     care::client::RunGet},
    {"list", "list jobs, newest first",
     "usage: carectl list [--state S[,S...]] [--label K=V]... "
     "[--page-size N]\n"
     "                    [--page-token T | --all]\n"
     "  states: queued, running, cancelling, succeeded, failed, cancelled\n",
     care::client::RunList},
    {"watch",
     "follow a job until it ends (exit 0/1/2 = succeeded/failed/"
     "cancelled)",
     "usage: carectl watch JOB_ID [--after SEQ] [--plain]\n"
     "  A progress bar on a terminal, one line per event otherwise, JSON\n"
     "  lines with --output json. Exit: 0 succeeded, 1 failed, 2 cancelled,\n"
     "  3 usage or connection error.\n",
     care::client::RunWatch},
    {"cancel", "cancel jobs", "usage: carectl cancel JOB_ID...\n",
     care::client::RunCancel},
    {"events", "list a job's events",
     "usage: carectl events JOB_ID [--after SEQ] [--page-size N]\n",
     care::client::RunEvents},
    {"health", "check that care-server is serving (exit 0 when it is)",
     "usage: carectl health [--service NAME]\n", care::client::RunHealth},
    {"workers", "list workers and their devices, most recently seen first",
     "usage: carectl workers [--connected]\n"
     "  --connected  only workers seen within the server's\n"
     "               --worker-seen-seconds\n",
     care::client::RunWorkers},
    {"report", "fetch a succeeded job's report (HTML page, JSON)",
     "usage: carectl report JOB_ID [--html FILE] [--json]\n"
     "  --html FILE  write the self-contained HTML report to FILE (- for\n"
     "               stdout); default JOB_ID.html unless --json is given\n"
     "  --json       print the report JSON (care_report.json) to stdout\n",
     care::client::RunReport},
};

void PrintHelp(std::ostream& out) {
  out << "usage: carectl <command> [flags]\n\ncommands:\n";
  for (const Subcommand& c : kSubcommands) {
    out << "  " << c.name << std::string(9 - std::strlen(c.name), ' ')
        << c.summary << "\n";
  }
  out << "\nexit codes: 0 ok / succeeded, 1 failed (or refused by the "
         "server),\n2 cancelled, 3 usage or connection error.\n"
         "`carectl help <command>` shows a command's flags.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    PrintHelp(std::cerr);
    return kExitUsage;
  }
  if (args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    if (args.size() >= 2) {
      for (const Subcommand& c : kSubcommands) {
        if (args[1] == c.name) {
          std::cout << c.usage << kConnectionFlags;
          return 0;
        }
      }
    }
    PrintHelp(std::cout);
    return 0;
  }
  for (const Subcommand& c : kSubcommands) {
    if (args[0] == c.name) {
      args.erase(args.begin());
      // Before any command's own parsing (labels, spec flags): nothing that
      // is not UTF-8 may reach a proto3 string.
      if (absl::Status utf8 = care::client::CheckArgumentsUtf8(args);
          !utf8.ok()) {
        return care::client::UsageError(c.name, utf8);
      }
      return c.run(args);
    }
  }
  std::cerr << "carectl: unknown command '" << args[0]
            << "' (try carectl help)\n";
  return kExitUsage;
}
