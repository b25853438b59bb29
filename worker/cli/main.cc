// care-worker: runs CARE conversions locally (inspect, tokenize, eval,
// convert) or as a service worker (serve). See README.md.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cli/command.h"

namespace care::cli {

namespace {
std::vector<Command>& Registry() {
  static auto* commands = new std::vector<Command>();
  return *commands;
}

void PrintHelp(std::ostream& out) {
  out << "usage: care-worker <command> [flags]\n\ncommands:\n";
  for (const Command& c : Commands()) {
    out << "  " << c.name << std::string(12 - std::strlen(c.name), ' ')
        << c.summary << "\n";
  }
  out << "\n`care-worker help <command>` shows a command's flags.\n";
}
}  // namespace

bool RegisterCommand(const Command& command) {
  Registry().push_back(command);
  return true;
}

const std::vector<Command>& Commands() { return Registry(); }

}  // namespace care::cli

int main(int argc, char** argv) {
  using care::cli::Commands;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" ||
      args[0] == "-h") {
    if (args.size() >= 2) {
      for (const auto& c : Commands()) {
        if (args[1] == c.name) {
          std::cout << c.usage;
          return 0;
        }
      }
    }
    care::cli::PrintHelp(args.empty() ? std::cerr : std::cout);
    return args.empty() ? 2 : 0;
  }
  for (const auto& c : Commands()) {
    if (args[0] == c.name) {
      args.erase(args.begin());
      return c.run(args);
    }
  }
  std::cerr << "care-worker: unknown command '" << args[0]
            << "' (try care-worker help)\n";
  return 2;
}
