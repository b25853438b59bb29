// care-worker: runs CARE conversions locally (inspect, tokenize, eval,
// convert) or as a service worker (serve). See README.md.
#include <malloc.h>

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
// glibc serves blocks above the mmap threshold (dynamic, at most 32 MiB)
// with a fresh mmap and unmaps them on free, so every large temporary —
// a layer's [D, D] float64 covariance, its Grams, activation blocks — was
// page-faulted and zeroed by the kernel again: ~4 % of a 1B conversion's
// CPU time and 1.2 of its 5.9 system seconds (docs/performance.md,
// "Against PyTorch"). Kept in the heap they are reused; freed memory above
// 1 GiB at the top of the heap is still returned.
void KeepLargeBlocksInHeap() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
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
  care::cli::KeepLargeBlocksInHeap();
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
