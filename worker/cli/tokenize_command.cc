// care-worker tokenize: encodes text with a model's tokenizer (or decodes
// ids), the way calibration and evaluation will (docs/tokenizers.md).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/io/model_source.h"
#include "care/tokenizer/tokenizer.h"
#include "cli/command.h"
#include "nlohmann/json.hpp"

namespace care::cli {
namespace {

constexpr char kUsage[] =
    "usage: care-worker tokenize --model DIR_OR_URI (--text STR | --jsonl "
    "FILE) [--decode] [--field NAME]\n"
    "\n"
    "Encodes text exactly as the model's tokenizer does, without adding\n"
    "BOS/EOS (special-token text in the input is matched). The model\n"
    "directory's tokenizer.json is used when present, else tokenizer.model.\n"
    "  --model DIR_OR_URI  model directory (or one holding only tokenizer\n"
    "                      files), file:///dir or hf://org/name[@rev]\n"
    "  --text STR          prints the ids of STR on one line, space-separated\n"
    "  --jsonl FILE        each line {\"text\": ...} gives a line\n"
    "                      {\"ids\": [...]}; FILE '-' reads stdin\n"
    "  --decode            the inverse: --text takes ids (separated by\n"
    "                      spaces or commas) and prints the text; --jsonl\n"
    "                      lines {\"ids\": [...]} give {\"text\": ...}\n"
    "  --field NAME        the JSONL text field (default: text)\n";

absl::StatusOr<std::vector<int32_t>> ParseIds(absl::string_view text) {
  std::vector<int32_t> ids;
  for (absl::string_view part :
       absl::StrSplit(text, absl::ByAnyChar(" ,\t\n[]"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--decode: '", part, "' is not an integer id"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::Status RunText(const tok::Tokenizer& t, const std::string& text,
                     bool decode) {
  if (decode) {
    CARE_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, ParseIds(text));
    CARE_ASSIGN_OR_RETURN(const std::string out, t.Decode(ids));
    std::cout << out << "\n";
    return absl::OkStatus();
  }
  CARE_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, t.Encode(text));
  std::cout << absl::StrJoin(ids, " ") << "\n";
  return absl::OkStatus();
}

absl::Status RunJsonl(const tok::Tokenizer& t, const std::string& path,
                      const std::string& field, bool decode) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
    in = &file;
  }
  const std::string key = decode ? "ids" : field;
  std::string line;
  for (int64_t line_no = 1; std::getline(*in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(path, ":", line_no);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected a JSON object with a '", key, "' field"));
    }
    nlohmann::json out = nlohmann::json::object();
    if (decode) {
      std::vector<int32_t> ids;
      if (!j[key].is_array()) {
        return absl::InvalidArgumentError(where + ": 'ids' must be an array");
      }
      for (const auto& v : j[key]) {
        if (!v.is_number_integer()) {
          return absl::InvalidArgumentError(where + ": ids must be integers");
        }
        ids.push_back(v.get<int32_t>());
      }
      absl::StatusOr<std::string> text = t.Decode(ids);
      if (!text.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", text.status().message()));
      }
      // Decoded bytes may be ill-formed only if the ids split a character;
      // the decoders already replace such bytes with U+FFFD.
      out["text"] = *text;
    } else {
      if (!j[key].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": '", key, "' must be a string"));
      }
      absl::StatusOr<std::vector<int32_t>> ids =
          t.Encode(j[key].get<std::string>());
      if (!ids.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", ids.status().message()));
      }
      out["ids"] = *ids;
    }
    std::cout << out.dump(-1, ' ', false,
                          nlohmann::json::error_handler_t::replace)
              << "\n";
  }
  if (in->bad()) return absl::DataLossError(path + ": read error");
  return absl::OkStatus();
}

int RunTokenize(const std::vector<std::string>& args) {
  const std::set<std::string> known = {"model", "text", "jsonl", "decode",
                                       "field"};
  absl::StatusOr<Flags> flags = Flags::Parse(args, {"decode"});
  absl::Status usage = flags.ok() ? flags->CheckKnown(known) : flags.status();
  if (usage.ok() && !flags->Has("model")) {
    usage = absl::InvalidArgumentError("--model is required");
  }
  if (usage.ok() && flags->Has("text") == flags->Has("jsonl")) {
    usage = absl::InvalidArgumentError("give exactly one of --text, --jsonl");
  }
  if (usage.ok() && !flags->positionals().empty()) {
    usage = absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags->positionals()[0], "'"));
  }
  if (!usage.ok()) {
    std::cerr << "care-worker tokenize: " << usage.message()
              << " (see care-worker help tokenize)\n";
    return 2;
  }
  std::string model = *flags->String("model");
  // Local paths may be relative or hold ".." (ParseUri wants neither).
  if (model.find("://") == std::string::npos && !model.empty()) {
    std::error_code ec;
    model = std::filesystem::absolute(model, ec).lexically_normal().string();
  }
  absl::StatusOr<std::string> dir = io::ResolveModelDir(model);
  absl::StatusOr<std::unique_ptr<tok::Tokenizer>> t =
      dir.ok() ? tok::LoadTokenizer(*dir)
               : absl::StatusOr<std::unique_ptr<tok::Tokenizer>>(dir.status());
  absl::Status status = t.status();
  if (status.ok()) {
    const bool decode = flags->Bool("decode");
    status = flags->Has("text")
                 ? RunText(**t, *flags->String("text"), decode)
                 : RunJsonl(**t, *flags->String("jsonl"),
                            flags->StringOr("field", "text"), decode);
  }
  if (!status.ok()) {
    std::cerr << "care-worker tokenize: " << status.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

CARE_REGISTER_COMMAND(tokenize, "tokenize",
                      "encode text to token ids (or decode ids) with a model's "
                      "tokenizer",
                      kUsage, &RunTokenize);

}  // namespace care::cli
