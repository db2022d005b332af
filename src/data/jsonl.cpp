#include "data/jsonl.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <utility>

#include "core/error.h"
#include "core/strings.h"

namespace mds::data {

namespace {

using json = nlohmann::json;

// "a number", "an array" ...: the JSON type as it reads in an error message.
const char* json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

// nlohmann's parse_error text without its "[json.exception...] parse error at line 1, " prefix
// (we give the line ourselves) and with a long "last read" excerpt cut to its end.
std::string short_parse_reason(const std::string& what) {
  std::string reason = what;
  const std::string marker = "parse error at line 1, ";
  std::size_t at = reason.find(marker);
  if (at != std::string::npos) {
    reason.erase(0, at + marker.size());
  } else if (!reason.empty() && reason[0] == '[') {
    std::size_t close = reason.find("] ");
    if (close != std::string::npos) reason.erase(0, close + 2);
  }
  const std::string last_read = "last read: '";
  std::size_t start = reason.find(last_read);
  if (start == std::string::npos) return reason;
  start += last_read.size();
  std::size_t end = reason.rfind("'; expected");
  if (end == std::string::npos || end < start) end = reason.size() - 1;
  constexpr std::size_t kKeep = 40;
  if (end <= start || end - start <= kKeep + 3) return reason;
  std::size_t cut = end - kKeep;
  // Do not split a UTF-8 character: move past continuation bytes.
  while (cut < end && (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80) ++cut;
  reason.replace(start, cut - start, "...");
  return reason;
}

std::string with_thousands(std::size_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

JsonlReader::JsonlReader(const std::string& path, JsonlOptions options)
    : reader_(path), options_(options) {}

bool JsonlReader::next(Example& example) {
  while (reader_.next(line_)) {
    ++stats_.lines;
    const std::size_t n = reader_.line_number();
    if (trim(line_).empty()) {
      ++stats_.blank;
      continue;
    }
    const std::string& path = reader_.path();
    // Checked first so that the message points at the byte rather than at nlohmann's guess.
    std::size_t bad = find_invalid_utf8(line_);
    if (bad != std::string::npos) fail(path, ":", n, ": invalid UTF-8 at byte ", bad + 1);

    json j;
    try {
      j = json::parse(line_);
    } catch (const json::exception& e) {  // parse_error, and out_of_range for a number past double
      fail(path, ":", n, ": malformed JSON: ", short_parse_reason(e.what()));
    }
    if (!j.is_object()) fail(path, ":", n, ": expected a JSON object, got ", json_type_name(j));

    auto string_field = [&](const char* name, bool required, std::string& out) {
      auto it = j.find(name);
      if (it == j.end()) {
        if (required) fail(path, ":", n, ": field \"", name, "\" is missing");
        out.clear();
        return;
      }
      if (!it->is_string())
        fail(path, ":", n, ": field \"", name, "\": expected a string, got ", json_type_name(*it));
      out = it->get_ref<const std::string&>();
    };
    string_field("src", true, example.src);
    string_field("trg", options_.require_trg, example.trg);

    example.id.clear();
    auto id = j.find("id");
    if (id != j.end()) {
      if (id->is_string())
        example.id = id->get_ref<const std::string&>();
      else if (id->is_number_integer())  // signed or unsigned; dump() gives the decimal text
        example.id = id->dump();
      else
        fail(path, ":", n, ": field \"id\": expected a string or an integer, got ",
             json_type_name(*id));
    }

    example.refs.clear();
    auto refs = j.find("refs");
    if (refs != j.end()) {
      if (!refs->is_array())
        fail(path, ":", n, ": field \"refs\": expected an array of strings, got ",
             json_type_name(*refs));
      for (std::size_t i = 0; i < refs->size(); ++i) {
        const json& r = (*refs)[i];
        if (!r.is_string())
          fail(path, ":", n, ": field \"refs\": item ", i, ": expected a string, got ",
               json_type_name(r));
        example.refs.push_back(r.get_ref<const std::string&>());
      }
    }
    example.line = n;

    if (options_.skip_empty) {
      if (trim(example.src).empty()) {
        ++stats_.empty_src;
        continue;
      }
      // An optional trg (generation inputs) may be absent or empty.
      if (options_.require_trg && trim(example.trg).empty()) {
        ++stats_.empty_trg;
        continue;
      }
    }
    ++stats_.examples;
    return true;
  }
  return false;
}

std::string JsonlReader::summary() const {
  std::string out = str_cat(with_thousands(stats_.examples),
                            stats_.examples == 1 ? " example" : " examples", " from ", path());
  std::string skipped;
  auto add = [&](std::size_t count, const char* one, const char* many) {
    if (count == 0) return;
    if (!skipped.empty()) skipped += ", ";
    skipped += str_cat(with_thousands(count), " ", count == 1 ? one : many, " skipped");
  };
  add(stats_.blank, "blank line", "blank lines");
  add(stats_.empty_src, "with an empty source", "with an empty source");
  add(stats_.empty_trg, "with an empty target", "with an empty target");
  if (!skipped.empty()) out += " (" + skipped + ")";
  return out;
}

std::vector<Example> read_jsonl(const std::string& path, JsonlOptions options,
                                JsonlStats* stats) {
  JsonlReader reader(path, options);
  std::vector<Example> out;
  Example example;
  while (reader.next(example)) out.push_back(std::move(example));  // next() resets every field
  if (stats != nullptr) *stats = reader.stats();
  return out;
}

std::string json_quote(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += ch;  // ASCII and UTF-8 bytes as they are
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace mds::data
