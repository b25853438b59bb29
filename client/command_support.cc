#include "client/command_support.h"

#include <cstdint>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "client/cli.h"

namespace care::client {

namespace {

// Well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF): what proto3 string fields must hold.
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // Truncated sequence.
    for (size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

absl::Status CheckArgumentsUtf8(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (IsValidUtf8(args[i])) continue;
    std::string what = absl::StrCat("argument ", i + 1);
    if (args[i].rfind("--", 0) == 0) {
      what = absl::StrCat("flag ", args[i].substr(0, args[i].find('=')));
    } else if (i > 0 && args[i - 1].rfind("--", 0) == 0 &&
               args[i - 1].find('=') == std::string::npos) {
      what = absl::StrCat("the value of ", args[i - 1]);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(what,
                     ": not valid UTF-8 (strings sent to care-server "
                     "must be UTF-8)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CommandSetup> SetupCommand(
    const std::vector<std::string>& args, const std::set<std::string>& valued,
    const std::set<std::string>& boolean) {
  std::set<std::string> bools = ConnectionBoolFlagNames();
  bools.insert(boolean.begin(), boolean.end());
  std::set<std::string> known = ConnectionFlagNames();
  known.insert(valued.begin(), valued.end());
  known.insert(bools.begin(), bools.end());

  CommandSetup setup;
  CARE_RETURN_IF_ERROR(CheckArgumentsUtf8(args));
  CARE_ASSIGN_OR_RETURN(setup.flags, Flags::Parse(args, bools));
  CARE_RETURN_IF_ERROR(setup.flags.CheckKnown(known));
  CARE_ASSIGN_OR_RETURN(
      setup.output, ParseOutputFormat(setup.flags.StringOr("output", "table")));
  CARE_ASSIGN_OR_RETURN(ConnectionOptions options,
                        ConnectionOptionsFromFlags(setup.flags));
  CARE_ASSIGN_OR_RETURN(setup.connection, Connection::Open(options));
  return setup;
}

int UsageError(const char* command, const absl::Status& status) {
  std::cerr << "carectl " << command << ": " << status.message()
            << "\n(see carectl help " << command << ")\n";
  return kExitUsage;
}

}  // namespace care::client
