// JobSpec files for `carectl submit -f FILE` (docs/carectl.md "Spec files"):
// JSON in protobuf's JSON mapping, or YAML with the same keys. A YAML file is
// turned into that JSON document, typed by the JobSpec schema, and both go
// through one protobuf JSON parse: one mapping, whatever the format.
// Unknown keys are errors naming the key path ("calibration.smaples");
// YAML errors also name the line and column.
#ifndef CARE_CLIENT_SPEC_FILE_H_
#define CARE_CLIENT_SPEC_FILE_H_

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/v1/job.pb.h"

namespace care::client {

enum class SpecFormat { kJson, kYaml };

// .yaml/.yml -> kYaml, .json -> kJson; otherwise kJson when the first
// non-blank character of `text` is '{', else kYaml.
SpecFormat DetectSpecFormat(absl::string_view path, absl::string_view text);

// YAML text -> the protobuf-JSON document of a JobSpec. Scalars are typed by
// the field they set (a quoted "64" for an int32 is the number 64; `yes` is
// not a bool). Errors: "<source>:<line>:<col>: <key path>: <problem>" for
// syntax errors, unknown or repeated keys and values of the wrong type.
absl::StatusOr<nlohmann::json> YamlSpecToJson(absl::string_view text,
                                              absl::string_view source);

// The JobSpec of `text`; `source` (the file name) prefixes every error.
absl::StatusOr<care::v1::JobSpec> ParseSpecText(absl::string_view text,
                                                SpecFormat format,
                                                absl::string_view source);

// Reads and parses a spec file (format from DetectSpecFormat); NotFound when
// it cannot be read, InvalidArgument naming the file otherwise.
absl::StatusOr<care::v1::JobSpec> ReadSpecFile(const std::string& path);

}  // namespace care::client

#endif  // CARE_CLIENT_SPEC_FILE_H_
