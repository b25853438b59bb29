#include "client/spec_file.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/annotate.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace care::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

// Bounds that keep a hostile file cheap: aliases can make a small YAML
// document expand exponentially.
constexpr size_t kMaxSpecBytes = 1 << 20;
constexpr int64_t kMaxNodes = 100000;

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

// By proto name ("model_uri") or JSON name ("modelUri").
const FieldDescriptor* FindField(const Descriptor* d, absl::string_view key) {
  const std::string name(key);
  if (const FieldDescriptor* f = d->FindFieldByName(name)) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == name) return d->field(i);
  }
  return nullptr;
}

std::string FieldNames(const Descriptor* d) {
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i)
    names.push_back(d->field(i)->name());
  return absl::StrJoin(names, ", ");
}

class YamlConverter {
 public:
  explicit YamlConverter(absl::string_view source) : source_(source) {}

  absl::Status Message(const YAML::Node& node, const Descriptor* d,
                       const std::string& path, json* out) {
    CARE_RETURN_IF_ERROR(Count(node, path));
    *out = json::object();
    if (node.IsNull()) return absl::OkStatus();  // "evaluation:" alone.
    if (!node.IsMap()) {
      return Error(node, path,
                   absl::StrCat("expected a mapping of ", d->name(),
                                " fields, got ", Kind(node)));
    }
    std::set<const FieldDescriptor*> seen;
    for (const auto& entry : node) {
      const YAML::Node& key = entry.first;
      if (!key.IsScalar()) {
        return Error(key, path, "keys must be plain names");
      }
      const FieldDescriptor* f = FindField(d, key.Scalar());
      const std::string key_path = Join(path, key.Scalar());
      if (f == nullptr) {
        return Error(key, key_path,
                     absl::StrCat("unknown key (", d->name(),
                                  " has: ", FieldNames(d), ")"));
      }
      if (!seen.insert(f).second) {
        return Error(key, key_path, "given twice");
      }
      const YAML::Node& value = entry.second;
      if (value.IsNull() && !IsQuoted(value)) continue;  // Unset, as in JSON.
      json v;
      CARE_RETURN_IF_ERROR(Field(value, f, Join(path, f->name()), &v));
      (*out)[f->name()] = std::move(v);
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Field(const YAML::Node& node, const FieldDescriptor* f,
                     const std::string& path, json* out) {
    if (f->is_map()) {
      CARE_RETURN_IF_ERROR(Count(node, path));
      if (!node.IsMap()) {
        return Error(node, path,
                     absl::StrCat("expected a mapping, got ", Kind(node)));
      }
      const FieldDescriptor* value_field = f->message_type()->map_value();
      *out = json::object();
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) {
          return Error(entry.first, path, "map keys must be scalars");
        }
        const std::string key_path = Join(path, entry.first.Scalar());
        if (out->contains(entry.first.Scalar())) {
          return Error(entry.first, key_path, "given twice");
        }
        json v;
        CARE_RETURN_IF_ERROR(Single(entry.second, value_field, key_path, &v));
        (*out)[entry.first.Scalar()] = std::move(v);
      }
      return absl::OkStatus();
    }
    if (f->is_repeated()) {
      CARE_RETURN_IF_ERROR(Count(node, path));
      if (!node.IsSequence()) {
        return Error(node, path,
                     absl::StrCat("expected a list, got ", Kind(node)));
      }
      *out = json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        json v;
        CARE_RETURN_IF_ERROR(
            Single(node[i], f, absl::StrCat(path, "[", i, "]"), &v));
        out->push_back(std::move(v));
      }
      return absl::OkStatus();
    }
    return Single(node, f, path, out);
  }

  // One value of `f`'s type (for a repeated or map field, one element).
  absl::Status Single(const YAML::Node& node, const FieldDescriptor* f,
                      const std::string& path, json* out) {
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      return Message(node, f->message_type(), path, out);
    }
    CARE_RETURN_IF_ERROR(Count(node, path));
    const char* expected = TypeName(f);
    if (!node.IsScalar()) {
      return Error(node, path,
                   absl::StrCat("expected ", expected, ", got ", Kind(node)));
    }
    const std::string& s = node.Scalar();
    auto wrong = [&]() {
      return Error(node, path,
                   absl::StrCat("expected ", expected, ", got '", s, "'"));
    };
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        *out = s;
        return absl::OkStatus();
      case FieldDescriptor::CPPTYPE_BOOL: {
        const std::string lower = absl::AsciiStrToLower(s);
        if (lower != "true" && lower != "false") return wrong();
        *out = lower == "true";
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64: {
        int64_t v = 0;
        if (!absl::SimpleAtoi(s, &v)) return wrong();
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 &&
            (v < std::numeric_limits<int32_t>::min() ||
             v > std::numeric_limits<int32_t>::max())) {
          return Error(node, path,
                       absl::StrCat("'", s, "' is outside the int32 range"));
        }
        *out = v;
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v = 0;
        if (!absl::SimpleAtoi(s, &v)) return wrong();
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 &&
            v > std::numeric_limits<uint32_t>::max()) {
          return Error(node, path,
                       absl::StrCat("'", s, "' is outside the uint32 range"));
        }
        *out = v;
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        double v = 0;
        if (!absl::SimpleAtod(s, &v)) return wrong();
        // protobuf's JSON spelling of the non-finite values.
        if (std::isnan(v)) {
          *out = "NaN";
        } else if (std::isinf(v)) {
          *out = v > 0 ? "Infinity" : "-Infinity";
        } else {
          *out = v;
        }
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        int64_t number = 0;
        if (absl::SimpleAtoi(s, &number)) {
          if (number < std::numeric_limits<int32_t>::min() ||
              number > std::numeric_limits<int32_t>::max()) {
            return wrong();
          }
          *out = number;
          return absl::OkStatus();
        }
        if (f->enum_type()->FindValueByName(s) == nullptr) {
          std::vector<std::string> names;
          for (int i = 0; i < f->enum_type()->value_count(); ++i) {
            names.push_back(f->enum_type()->value(i)->name());
          }
          return Error(node, path,
                       absl::StrCat("unknown value '", s, "' (one of ",
                                    absl::StrJoin(names, ", "), ")"));
        }
        *out = s;
        return absl::OkStatus();
      }
      default:
        return Error(node, path, "unsupported field type");
    }
  }

  static const char* TypeName(const FieldDescriptor* f) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_BOOL:
        return "true or false";
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
        return "an integer";
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
        return "a non-negative integer";
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE:
        return "a number";
      case FieldDescriptor::CPPTYPE_ENUM:
        return "an enum name";
      default:
        return "a string";
    }
  }

  static const char* Kind(const YAML::Node& node) {
    if (node.IsMap()) return "a mapping";
    if (node.IsSequence()) return "a list";
    if (node.IsNull()) return "nothing";
    return "a scalar";
  }

  // A quoted scalar ("" or "~") is a string, never null.
  static bool IsQuoted(const YAML::Node& node) { return node.Tag() == "!"; }

  absl::Status Count(const YAML::Node& node, const std::string& path) {
    if (++nodes_ > kMaxNodes) {
      return Error(node, path,
                   absl::StrCat("more than ", kMaxNodes,
                                " values (aliases expanded); not a job spec"));
    }
    return absl::OkStatus();
  }

  absl::Status Error(const YAML::Node& node, const std::string& path,
                     absl::string_view message) const {
    const YAML::Mark mark = node.Mark();
    std::string where(source_);
    if (!mark.is_null()) {
      absl::StrAppend(&where, ":", mark.line + 1, ":", mark.column + 1);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": ", path.empty() ? "" : absl::StrCat(path, ": "), message));
  }

  std::string source_;
  int64_t nodes_ = 0;
};

// Counts YAML documents (and where the second starts) without building
// them. YAML::LoadAll is not used: yaml-cpp 0.7 loops forever on some
// malformed input there (found by tests/fuzz/yaml_spec_fuzzer), so the
// caller stops after two documents.
class DocumentCounter : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents == 2) second = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
  int documents = 0;
  YAML::Mark second = YAML::Mark::null_mark();
};

// Records where JSON syntax fails (nlohmann's non-throwing parse does not).
class JsonErrorFinder : public nlohmann::json_sax<json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception&) override {
    position_ = position;
    token_ = last_token;
    return false;
  }
  std::size_t position_ = 0;
  std::string token_;
};

// "line:col" of byte offset `position` (1-based, as editors count).
std::string LineColumn(absl::string_view text, size_t position) {
  int64_t line = 1, column = 1;
  for (size_t i = 0; i < position && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return absl::StrCat(line, ":", column);
}

// Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no
// overlong forms, surrogates or code points above U+10FFFF), or npos.
size_t InvalidUtf8Offset(absl::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // Range of the second byte.
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return absl::string_view::npos;
}

// Unknown keys and non-objects where a message or map belongs, by key path.
absl::Status CheckJsonKeys(const json& j, const Descriptor* d,
                           const std::string& path, absl::string_view source) {
  if (j.is_null()) return absl::OkStatus();
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", path.empty() ? "the spec" : path,
                     ": expected an object of ", d->name(), " fields"));
  }
  for (const auto& [key, value] : j.items()) {
    const FieldDescriptor* f = FindField(d, key);
    const std::string key_path = Join(path, key);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": ", key_path, ": unknown key (", d->name(),
                       " has: ", FieldNames(d), ")"));
    }
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !f->is_map() &&
        !f->is_repeated()) {
      CARE_RETURN_IF_ERROR(
          CheckJsonKeys(value, f->message_type(), key_path, source));
    }
  }
  return absl::OkStatus();
}

// The one mapping: protobuf's JSON parser on the (checked) document.
absl::StatusOr<care::v1::JobSpec> SpecFromJson(const json& document,
                                               absl::string_view source) {
  CARE_RETURN_IF_ERROR(
      CheckJsonKeys(document, care::v1::JobSpec::descriptor(), "", source));
  care::v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;  // A typo must not pass silently.
  std::string text;
  try {
    text = document.dump();
  } catch (const json::exception& e) {  // Invalid UTF-8: checked earlier.
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
  auto status =
      google::protobuf::util::JsonStringToMessage(text, &spec, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": not a valid JobSpec: ", std::string(status.message())));
  }
  return spec;
}

}  // namespace

SpecFormat DetectSpecFormat(absl::string_view path, absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".yaml") || absl::EndsWith(lower, ".yml")) {
    return SpecFormat::kYaml;
  }
  if (absl::EndsWith(lower, ".json")) return SpecFormat::kJson;
  const absl::string_view body = absl::StripLeadingAsciiWhitespace(text);
  return !body.empty() && body[0] == '{' ? SpecFormat::kJson
                                         : SpecFormat::kYaml;
}

absl::StatusOr<json> YamlSpecToJson(absl::string_view text,
                                    absl::string_view source) {
  if (text.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", text.size(),
                     " bytes; a spec file is at most ", kMaxSpecBytes));
  }
  // JobSpec strings are UTF-8 (protobuf and JSON require it).
  if (const size_t bad = InvalidUtf8Offset(text);
      bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", LineColumn(text, bad),
                     ": invalid UTF-8 (byte offset ", bad, ")"));
  }
  // yaml-cpp reports errors by throwing: this is the boundary where they
  // become a Status.
  try {
    const std::string body(text);
    const YAML::Node root = YAML::Load(body);  // The first document.
    std::istringstream stream(body);
    YAML::Parser parser(stream);
    DocumentCounter counter;
    for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
    }
    if (counter.documents > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", counter.second.line + 1,
                       ": a spec file holds one YAML document, found more"));
    }
    if (root.IsNull()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": empty spec (no YAML document)"));
    }
    YamlConverter converter(source);
    json out;
    CARE_RETURN_IF_ERROR(
        converter.Message(root, care::v1::JobSpec::descriptor(), "", &out));
    return out;
  } catch (const YAML::Exception& e) {
    std::string where(source);
    if (!e.mark.is_null()) {
      absl::StrAppend(&where, ":", e.mark.line + 1, ":", e.mark.column + 1);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": invalid YAML: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": invalid YAML: ", e.what()));
  }
}

absl::StatusOr<care::v1::JobSpec> ParseSpecText(absl::string_view text,
                                                SpecFormat format,
                                                absl::string_view source) {
  if (format == SpecFormat::kYaml) {
    CARE_ASSIGN_OR_RETURN(json document, YamlSpecToJson(text, source));
    return SpecFromJson(document, source);
  }
  const json document = json::parse(text.begin(), text.end(), nullptr,
                                    /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    JsonErrorFinder finder;
    json::sax_parse(text.begin(), text.end(), &finder);
    return absl::InvalidArgumentError(absl::StrCat(
        source, ":",
        LineColumn(text, finder.position_ > 0 ? finder.position_ - 1 : 0),
        ": invalid JSON near '", finder.token_, "'"));
  }
  return SpecFromJson(document, source);
}

absl::StatusOr<care::v1::JobSpec> ReadSpecFile(const std::string& path) {
  absl::StatusOr<std::string> body = ReadFileToString(path);
  if (!body.ok()) return Annotate(body.status(), "spec file");
  return ParseSpecText(*body, DetectSpecFormat(path, *body), path);
}

}  // namespace care::client
