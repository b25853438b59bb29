// Spec files for carectl submit -f: a YAML spec equals its JSON twin
// (golden files in specs/), and every error names the file, the key path
// and, for YAML, the line and column.
#include "client/spec_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "client/spec_flags.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "support/fixtures.h"

namespace care::client {
namespace {

using ::testing::HasSubstr;

std::string SpecPath(const std::string& name) {
  return std::string(CARECTL_SPECS_DIR) + "/" + name;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::Status YamlError(const std::string& text) {
  return ParseSpecText(text, SpecFormat::kYaml, "spec.yaml").status();
}

TEST(SpecFile, YamlGoldenEqualsItsJsonTwin) {
  const std::string yaml = Slurp(SpecPath("full.yaml"));
  const std::string json_text = Slurp(SpecPath("full.json"));
  ASSERT_FALSE(yaml.empty());
  // The YAML becomes exactly the JSON document of the twin...
  absl::StatusOr<nlohmann::json> converted = YamlSpecToJson(yaml, "full.yaml");
  ASSERT_TRUE(converted.ok()) << converted.status();
  EXPECT_EQ(*converted, nlohmann::json::parse(json_text)) << converted->dump(2);
  // ...and both give the same JobSpec through the same parser.
  absl::StatusOr<care::v1::JobSpec> from_yaml =
      ReadSpecFile(SpecPath("full.yaml"));
  absl::StatusOr<care::v1::JobSpec> from_json =
      ReadSpecFile(SpecPath("full.json"));
  ASSERT_TRUE(from_yaml.ok()) << from_yaml.status();
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*from_yaml,
                                                                 *from_json))
      << from_yaml->DebugString() << "\nvs\n"
      << from_json->DebugString();
  // Spot checks that the twin means what it says.
  EXPECT_EQ(from_yaml->calibration().seed(), 18446744073709551615ull);
  EXPECT_EQ(from_yaml->calibration().sequence_length(), 32);
  EXPECT_TRUE(from_yaml->calibration().sequential());
  EXPECT_TRUE(from_yaml->evaluation().prepend_bos());
  EXPECT_TRUE(from_yaml->evaluation().heldout_figures());
  EXPECT_EQ(from_yaml->evaluation().text_field(), "123");
  ASSERT_EQ(from_yaml->evaluation().tasks_size(), 2);
  EXPECT_EQ(from_yaml->evaluation().tasks(0).limit(), 500);
  EXPECT_EQ(from_yaml->evaluation().tasks(0).format(), "arc");
  EXPECT_EQ(from_yaml->evaluation().tasks(1).name(), "hs");
  EXPECT_EQ(from_yaml->request_id(), "42");
  EXPECT_TRUE(from_yaml->has_damping());
  EXPECT_EQ(from_yaml->output_dtype(), care::v1::OUTPUT_DTYPE_BF16);
  EXPECT_EQ(from_yaml->rank_allocation(), care::v1::RANK_ALLOCATION_ADJUSTED);
  EXPECT_EQ(from_yaml->labels().at("env"), "ci");
}

TEST(SpecFile, FormatFromExtensionOrContent) {
  EXPECT_EQ(DetectSpecFormat("a.yaml", "{"), SpecFormat::kYaml);
  EXPECT_EQ(DetectSpecFormat("a.YML", ""), SpecFormat::kYaml);
  EXPECT_EQ(DetectSpecFormat("a.json", "x: 1"), SpecFormat::kJson);
  EXPECT_EQ(DetectSpecFormat("spec", "  \n{\"a\": 1}"), SpecFormat::kJson);
  EXPECT_EQ(DetectSpecFormat("spec", "model_uri: /m"), SpecFormat::kYaml);
}

TEST(SpecFile, BadIndentationNamesLineAndColumn) {
  absl::Status s = YamlError(
      "model_uri: /m\n"
      "calibration:\n"
      "  samples: 64\n"
      " sequence_length: 16\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("spec.yaml:4:"));
  EXPECT_THAT(s.message(), HasSubstr("invalid YAML"));
}

TEST(SpecFile, UnknownKeysNameTheKeyPath) {
  absl::Status s = YamlError(
      "model_uri: /m\n"
      "calibration:\n"
      "  smaples: 64\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("spec.yaml:3:3: calibration.smaples: unknown key"));
  EXPECT_THAT(s.message(), HasSubstr("samples"));  // The fields it could be.

  absl::StatusOr<care::v1::JobSpec> j = ParseSpecText(
      R"({"model_uri": "/m", "evaluation": {"windowLength": 8, "bos": true}})",
      SpecFormat::kJson, "spec.json");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(),
              HasSubstr("spec.json: evaluation.bos: unknown key"));
  EXPECT_THAT(YamlError("bogus: 1\n").message(),
              HasSubstr("spec.yaml:1:1: bogus: unknown key"));
}

TEST(SpecFile, WrongTypesNameFieldLineAndColumn) {
  const struct {
    std::string yaml;
    std::string expected;
  } cases[] = {
      {"calibration:\n  samples: many\n",
       "spec.yaml:2:12: calibration.samples: expected an integer, got 'many'"},
      {"calibration:\n  samples: 3000000000\n",
       "calibration.samples: '3000000000' is outside the int32 range"},
      {"calibration:\n  seed: -1\n",
       "calibration.seed: expected a non-negative integer"},
      {"evaluation:\n  prepend_bos: yes\n",
       "spec.yaml:2:16: evaluation.prepend_bos: expected true or false"},
      {"damping: high\n", "spec.yaml:1:10: damping: expected a number"},
      {"method: CARE\n", "method: unknown value 'CARE' (one of"},
      {"calibration: 5\n", "spec.yaml:1:14: calibration: expected a mapping"},
      {"model_uri: [a, b]\n",
       "spec.yaml:1:12: model_uri: expected a string, got a list"},
      {"labels:\n  team: {a: b}\n",
       "labels.team: expected a string, got a mapping"},
      {"labels: x\n", "labels: expected a mapping"},
      {"model_uri: /a\nmodelUri: /b\n", "spec.yaml:2:1: modelUri: given twice"},
  };
  for (const auto& c : cases) {
    absl::Status s = YamlError(c.yaml);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(s.message(), HasSubstr(c.expected)) << c.yaml;
  }
}

TEST(SpecFile, DocumentsSizeAndJsonSyntax) {
  EXPECT_THAT(YamlError("").message(), HasSubstr("empty spec"));
  EXPECT_THAT(YamlError("model_uri: /a\n---\nmodel_uri: /b\n").message(),
              HasSubstr("spec.yaml:2: a spec file holds one YAML document"));
  EXPECT_THAT(YamlError("model_uri: /m\nrequest_id: a\xff\n").message(),
              HasSubstr("spec.yaml:2:14: invalid UTF-8 (byte offset 27)"));
  EXPECT_THAT(YamlError("request_id: \xed\xa0\x80\n").message(),
              HasSubstr("invalid UTF-8"));  // A surrogate.
  EXPECT_TRUE(
      ParseSpecText("request_id: caf\xc3\xa9\n", SpecFormat::kYaml, "spec.yaml")
          .ok());
  // yaml-cpp 0.7's LoadAll never returns on this input (fuzzer finding).
  EXPECT_EQ(YamlError("!ca,ibrbuprepend_bos d[ttc\n").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(YamlError("- a\n- b\n").message(),
              HasSubstr("expected a mapping of JobSpec fields"));
  // Aliases that would expand to 10^8 values are refused, not expanded.
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'h'; ++c) {
    bomb += absl::StrCat(std::string(1, c), ": &", std::string(1, c), " [");
    for (int i = 0; i < 10; ++i) {
      bomb += absl::StrCat(i ? ", " : "", "*", std::string(1, c - 1));
    }
    bomb += "]\n";
  }
  bomb = "labels:\n  k: &x v\nmodel_uri: *x\n" + bomb;  // Unknown key "a".
  EXPECT_THAT(YamlError(bomb).message(), HasSubstr("a: unknown key"));

  absl::StatusOr<care::v1::JobSpec> j =
      ParseSpecText("{\n  \"model_uri\": \"/m\",\n  \"priority\": ,\n}",
                    SpecFormat::kJson, "spec.json");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr("spec.json:3:"));
  EXPECT_THAT(j.status().message(), HasSubstr("invalid JSON"));
  // Scalar type errors in JSON come from protobuf's parser, naming the field.
  j = ParseSpecText(R"({"calibration": {"samples": "many"}})",
                    SpecFormat::kJson, "spec.json");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr("spec.json"));
  EXPECT_THAT(j.status().message(), HasSubstr("samples"));
}

TEST(SpecFile, AnchorsAndAliasesResolve) {
  absl::StatusOr<care::v1::JobSpec> s = ParseSpecText(
      "calibration: &data\n  dataset_uri: /d.txt\n  text_field: body\n"
      "evaluation: *data\n",
      SpecFormat::kYaml, "spec.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->evaluation().dataset_uri(), "/d.txt");
  EXPECT_EQ(s->evaluation().text_field(), "body");
}

// carectl submit -f spec.yaml --out X: the flag wins, the rest is the file's;
// labels merge (a flag wins per key).
TEST(SpecFile, FlagsOverrideYamlValues) {
  const std::string dir = care::testing::MakeTempDir("carectl-yaml");
  std::ofstream(dir + "/spec.yaml") << "model_uri: /models/a\n"
                                       "output_uri: /out/a\n"
                                       "kv_budget: {rank_per_matrix: 8}\n"
                                       "calibration:\n"
                                       "  dataset_uri: /c.txt\n"
                                       "  samples: 16\n"
                                       "labels: {team: x, env: prod}\n";
  std::vector<std::string> args = {
      "-f", dir + "/spec.yaml", "--out", "/out/b", "--calib-samples",
      "32", "--label",          "env=ci"};
  ExpandShortFlags(args);
  EXPECT_EQ(args[0], "--spec");
  auto labels = ExtractRepeated(args, "label");
  ASSERT_TRUE(labels.ok());
  auto flags = Flags::Parse(args, SpecBoolFlagNames());
  ASSERT_TRUE(flags.ok()) << flags.status();
  auto spec = SpecFromFlags(*flags, *labels);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model_uri(), "/models/a");
  EXPECT_EQ(spec->output_uri(), "/out/b");
  EXPECT_EQ(spec->kv_budget().rank_per_matrix(), 8);
  EXPECT_EQ(spec->calibration().dataset_uri(), "/c.txt");
  EXPECT_EQ(spec->calibration().samples(), 32);
  EXPECT_EQ(spec->labels().at("team"), "x");
  EXPECT_EQ(spec->labels().at("env"), "ci");

  std::vector<std::string> after = {"--", "-f"};
  ExpandShortFlags(after);
  EXPECT_EQ(after[1], "-f");  // Positional after "--": left alone.
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace care::client
