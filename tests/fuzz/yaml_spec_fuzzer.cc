// libFuzzer target for carectl's YAML spec parser (scripts/fuzz.sh).
// Input: a spec file. Besides "no crash, no sanitizer report, no exception
// escaping", it checks the parser's promises: an accepted YAML file is a
// JSON object, and a spec it accepts survives a round trip through the JSON
// path unchanged (one mapping for both formats).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "client/spec_file.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto document = care::client::YamlSpecToJson(text, "fuzz.yaml");
  auto spec = care::client::ParseSpecText(text, care::client::SpecFormat::kYaml,
                                          "fuzz.yaml");
  if (document.ok() && !document->is_object()) __builtin_trap();
  if (spec.ok() && !document.ok()) __builtin_trap();
  if (!spec.ok()) {
    if (spec.status().message().find("fuzz.yaml") == std::string::npos) {
      __builtin_trap();  // Every error names the file.
    }
    return 0;
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(*spec, &json, print).ok()) {
    __builtin_trap();
  }
  auto again = care::client::ParseSpecText(
      json, care::client::SpecFormat::kJson, "fuzz.json");
  if (!again.ok() ||
      !google::protobuf::util::MessageDifferencer::Equals(*spec, *again)) {
    __builtin_trap();
  }
  return 0;
}
