#include "core/config.h"

#include <toml++/toml.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/strings.h"

namespace mds {

const char* value_type_name(ValueType type) {
  switch (type) {
    case ValueType::boolean: return "a boolean";
    case ValueType::integer: return "an integer";
    case ValueType::real: return "a number";
    case ValueType::string: return "a string";
    case ValueType::int_list: return "a list of integers";
  }
  return "?";
}

Value Value::boolean(bool v) { Value x; x.type = ValueType::boolean; x.b = v; return x; }
Value Value::integer(int64_t v) { Value x; x.type = ValueType::integer; x.i = v; return x; }
Value Value::real(double v) { Value x; x.type = ValueType::real; x.d = v; return x; }
Value Value::string(std::string v) { Value x; x.type = ValueType::string; x.s = std::move(v); return x; }
Value Value::int_list(std::vector<int64_t> v) { Value x; x.type = ValueType::int_list; x.list = std::move(v); return x; }

bool Value::operator==(const Value& o) const {
  if (type != o.type) return false;
  switch (type) {
    case ValueType::boolean: return b == o.b;
    case ValueType::integer: return i == o.i;
    case ValueType::real: return d == o.d;
    case ValueType::string: return s == o.s;
    case ValueType::int_list: return list == o.list;
  }
  return false;
}

std::string Value::to_toml() const {
  std::ostringstream os;
  switch (type) {
    case ValueType::boolean: os << (b ? "true" : "false"); break;
    case ValueType::integer: os << i; break;
    case ValueType::real: {
      // Shortest text that reads back to the same double, always with a '.' or exponent.
      std::string text;
      for (int precision = 1; precision <= 17; ++precision) {
        std::ostringstream t;
        t.precision(precision);
        t << d;
        text = t.str();
        if (std::stod(text) == d) break;
      }
      if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
      os << text;
      break;
    }
    case ValueType::string: {
      toml::table t;
      t.insert("x", s);
      std::ostringstream tmp;
      tmp << t;  // "x = <escaped string>"
      std::string line = tmp.str();
      os << line.substr(line.find('=') + 2);
      break;
    }
    case ValueType::int_list: {
      os << '[';
      for (std::size_t k = 0; k < list.size(); ++k) os << (k ? ", " : "") << list[k];
      os << ']';
      break;
    }
  }
  return os.str();
}

namespace {

// The 1-based line of the first byte >= 0x80 outside a string or a comment, or 0. TOML allows such
// characters only there, and Debian's toml++ 3.3.0 reaches __builtin_unreachable (undefined
// behaviour) when it checks some of them for whitespace (is_non_ascii_horizontal_whitespace, for
// U+00A1-U+0499 and U+FBF6-U+FEFE; found by config_fuzz), so they are refused before it sees them.
// Conservative where toml++ might read differently: a quote opens a string only where a string may
// start (after = [ { , . or at a line's start), a # opens a comment only after a space, a line's
// start or a closing quote or bracket, and after a line-ending backslash in a multi-line string the
// next character (which toml++ tests for whitespace) must be ASCII.
std::size_t non_ascii_outside_strings(const std::string& text) {
  const auto ascii = [](char ch) { return static_cast<unsigned char>(ch) < 0x80; };
  std::size_t line = 1;
  char prev = '\n';  // the last character before this one that is not a space or a tab
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool after_space = i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\n';
    if (c == '\n') {
      ++line;
      prev = '\n';
      continue;
    }
    if (c == ' ' || c == '\t') continue;
    if (c == '#' && (after_space || std::string("\"']}").find(prev) != std::string::npos)) {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;  // a comment, to the end of the line
      continue;
    }
    if ((c == '"' || c == '\'') && std::string("\n=[{,.").find(prev) != std::string::npos) {
      const bool multi = text.compare(i, 3, std::string(3, c)) == 0;
      const std::size_t open = multi ? 3 : 1;
      for (i += open; i < text.size(); ++i) {
        if (text[i] == '\n') {
          if (!multi) {  // an unterminated string: toml++ reports it
            --i;
            break;
          }
          ++line;
        } else if (c == '"' && text[i] == '\\') {
          std::size_t next = i + 1;  // a line-ending backslash trims what follows: toml++ tests it
          while (next < text.size() && (text[next] == ' ' || text[next] == '\t' || text[next] == '\n' ||
                                        text[next] == '\r'))
            ++next;
          if (next < text.size() && !ascii(text[next])) return line;
          if (i + 1 < text.size() && text[i + 1] == '\n') ++line;
          ++i;  // an escape: the next character is not the closing quote
        } else if (text.compare(i, open, std::string(open, c)) == 0) {
          // A multi-line string may end with up to two more quotes inside it ("""a"""" is a).
          if (multi) while (i + open < text.size() && text[i + open] == c) ++i;
          i += open - 1;
          break;
        }
      }
      prev = c;
      continue;
    }
    if (!ascii(c)) return line;
    prev = c;
  }
  return 0;
}

std::vector<std::string> all_keys() {
  std::vector<std::string> keys;
  for (const auto& spec : config_schema()) keys.push_back(spec.key);
  return keys;
}

std::vector<std::string> all_sections() {
  std::vector<std::string> sections;
  for (const auto& spec : config_schema()) {
    std::string sec = spec.key.substr(0, spec.key.find('.'));
    if (sections.empty() || sections.back() != sec) sections.push_back(sec);
  }
  return sections;
}

std::string where(const std::string& origin, const toml::node& node) {
  const auto& src = node.source();
  if (src.begin.line == 0) return origin;
  return str_cat(origin, ":", src.begin.line);
}

std::string toml_type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "a boolean";
    default: return "a date or time";
  }
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& at) {
  std::string hint = closest_match(key, all_keys());
  fail(at, ": unknown key \"", key, "\"",
       hint.empty() ? std::string("; `moe-diffuseq config schema` lists the keys")
                    : str_cat("; did you mean \"", hint, "\"?"));
}

// Converts a TOML node to the key's type (integers are accepted for real keys, a single integer
// for a list); throws naming the key and where it was written.
[[noreturn]] void wrong_type(const KeySpec& spec, const toml::node& node, const std::string& at) {
  fail(at, ": ", spec.key, ": expected ", value_type_name(spec.default_value.type), ", got ",
       toml_type_name(node));
}

Value convert(const KeySpec& spec, const toml::node& node, const std::string& at) {
  switch (spec.default_value.type) {
    case ValueType::boolean:
      if (auto v = node.value_exact<bool>()) return Value::boolean(*v);
      wrong_type(spec, node, at);
    case ValueType::integer:
      if (auto v = node.value_exact<int64_t>()) return Value::integer(*v);
      wrong_type(spec, node, at);
    case ValueType::real:
      if (node.is_integer()) return Value::real(static_cast<double>(*node.value_exact<int64_t>()));
      if (auto v = node.value_exact<double>()) return Value::real(*v);
      wrong_type(spec, node, at);
    case ValueType::string:
      if (auto v = node.value_exact<std::string>()) return Value::string(*v);
      wrong_type(spec, node, at);
    case ValueType::int_list: {
      if (node.is_integer()) return Value::int_list({*node.value_exact<int64_t>()});
      const toml::array* arr = node.as_array();
      if (!arr) wrong_type(spec, node, at);
      std::vector<int64_t> out;
      for (const auto& el : *arr) {
        auto v = el.value_exact<int64_t>();
        if (!v) fail(at, ": ", spec.key, ": expected a list of integers, got an element that is ",
                     toml_type_name(el));
        out.push_back(*v);
      }
      return Value::int_list(std::move(out));
    }
  }
  wrong_type(spec, node, at);
}

void check_bounds(const KeySpec& spec, const Value& v, const std::string& at) {
  auto check_number = [&](double x) {
    if (x < spec.min || x > spec.max || std::isnan(x)) {
      // Integer keys' bounds as integers (an ostream writes 1048576.0 as 1.04858e+06).
      const bool integral = spec.default_value.type == ValueType::integer || spec.default_value.type == ValueType::int_list;
      const auto bound = [&](double b) {
        if (b >= 1e18) return std::string("inf");
        return integral ? std::to_string(static_cast<long long>(b)) : str_cat(b);
      };
      std::ostringstream range;
      range << "[" << bound(spec.min) << ", " << bound(spec.max) << "]";
      fail(at, ": ", spec.key, " = ", v.to_toml(), " is out of range ", range.str());
    }
  };
  switch (v.type) {
    case ValueType::integer: check_number(static_cast<double>(v.i)); break;
    case ValueType::real: check_number(v.d); break;
    case ValueType::int_list: for (auto x : v.list) check_number(static_cast<double>(x)); break;
    case ValueType::string:
      if (!spec.choices.empty()) {
        for (const auto& c : spec.choices)
          if (c == v.s) return;
        std::string list;
        for (const auto& c : spec.choices) list += (list.empty() ? "\"" : ", \"") + c + "\"";
        std::string hint = closest_match(v.s, spec.choices);
        fail(at, ": ", spec.key, " = \"", v.s, "\" is not one of ", list,
             hint.empty() ? "" : str_cat("; did you mean \"", hint, "\"?"));
      }
      break;
    case ValueType::boolean: break;
  }
}

}  // namespace

Config::Config() {
  for (const auto& spec : config_schema()) {
    values_[spec.key] = spec.default_value;
    origins_[spec.key] = "default";
  }
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides) {
  Config config;
  if (!path.empty()) config.merge_file(path);
  for (const auto& o : overrides) config.set(o);
  config.validate();
  return config;
}

void Config::merge_file(const std::string& path) {
  MDS_CHECK(fs::is_regular_file(path), "cannot read config file ", path);
  merge_toml(fs::read_file(path), path);
}

void Config::assign(const std::string& key, Value value, const std::string& at) {
  const KeySpec* spec = find_key_spec(key);
  MDS_ASSERT(spec != nullptr);
  check_bounds(*spec, value, at);
  values_[key] = std::move(value);
  origins_[key] = at;
}

void Config::merge_toml(const std::string& text, const std::string& origin) {
  if (const std::size_t line = non_ascii_outside_strings(text))
    fail(origin, ":", line, ": invalid TOML: a non-ASCII character outside a string or a comment");
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    fail(origin, ":", e.source().begin.line, ": invalid TOML: ", e.description());
  }
  const auto sections = all_sections();
  for (const auto& [sec_key, sec_node] : root) {
    std::string section(sec_key.str());
    std::string at = where(origin, sec_node);
    bool known = false;
    for (const auto& s : sections) known = known || s == section;
    if (!known) {
      // A top-level key like `layers = 4` was probably meant for a section.
      std::string hint = closest_match(section, sections);
      for (const auto& spec : config_schema())
        if (hint.empty() && spec.key.substr(spec.key.find('.') + 1) == section) hint = spec.key;
      fail(at, ": unknown section or key \"", section, "\"",
           hint.empty() ? "" : str_cat("; did you mean \"", hint, "\"?"));
    }
    const toml::table* table = sec_node.as_table();
    if (!table) fail(at, ": \"", section, "\" must be a table ([", section, "]), got ", toml_type_name(sec_node));
    for (const auto& [key, node] : *table) {
      std::string full = section + "." + std::string(key.str());
      std::string key_at = where(origin, node);
      const KeySpec* spec = find_key_spec(full);
      if (!spec) unknown_key(full, key_at);
      assign(full, convert(*spec, node, key_at), key_at);
    }
  }
}

void Config::set(const std::string& assignment) {
  const std::string at = "--set " + assignment;
  auto eq = assignment.find('=');
  MDS_CHECK(eq != std::string::npos, at, ": expected section.key=value");
  std::string key(trim(std::string_view(assignment).substr(0, eq)));
  std::string text(trim(std::string_view(assignment).substr(eq + 1)));
  const KeySpec* spec = find_key_spec(key);
  if (!spec) unknown_key(key, "--set");
  // Strings may be given bare (--set data.train=data/x.jsonl); everything else is TOML syntax.
  if (spec->default_value.type == ValueType::string && !starts_with(text, "\"") && !starts_with(text, "'")) {
    assign(key, Value::string(text), "--set");
    return;
  }
  if (non_ascii_outside_strings(text) != 0)
    fail(at, ": ", key, ": cannot read \"", text, "\" as ", value_type_name(spec->default_value.type),
         " (a non-ASCII character outside a string)");
  toml::table parsed;
  try {
    parsed = toml::parse("x = " + text);
  } catch (const toml::parse_error& e) {
    fail(at, ": ", key, ": cannot read \"", text, "\" as ", value_type_name(spec->default_value.type));
  }
  assign(key, convert(*spec, *parsed.get("x"), "--set"), "--set");
}

void Config::validate() const {
  auto fail_keys = [&](const std::string& a, const std::string& msg) {
    fail(a, " (from ", origin(a), "): ", msg);
  };
  if (get_int("model.dim") % get_int("model.heads") != 0)
    fail_keys("model.dim", str_cat("model.dim = ", get_int("model.dim"), " is not divisible by model.heads = ",
                                   get_int("model.heads")));
  if (get_int("model.time_embed_dim") % 2 != 0)
    fail_keys("model.time_embed_dim", "must be even (cos and sin halves)");
  // With one expert the layer is a plain FFN and top_k does not apply.
  if (get_int("moe.experts") > 1 && get_int("moe.top_k") > get_int("moe.experts"))
    fail_keys("moe.top_k", str_cat("moe.top_k = ", get_int("moe.top_k"), " is larger than moe.experts = ",
                                   get_int("moe.experts")));
  const auto& dil = get_int_list("attention.dilation");
  if (dil.size() > 1 && static_cast<int64_t>(dil.size()) != get_int("model.layers"))
    fail_keys("attention.dilation", str_cat("has ", dil.size(), " values; give one, or one per layer (model.layers = ",
                                            get_int("model.layers"), ")"));
  if (get_int("attention.dilated_heads") > get_int("model.heads"))
    fail_keys("attention.dilated_heads", "is larger than model.heads");
  // Checked here as well as at generation, so that a run learns of it before it trains, not after.
  const double start = get_float("sample.start_time");
  if (start <= 0.0) fail_keys("sample.start_time", "must be above 0 (1 = from noise)");
  if (start < 1.0 && get_string("sample.sampler").rfind("dpm++", 0) != 0)
    fail_keys("sample.start_time", str_cat("sample.start_time = ", start, " (below 1) needs a DPM-Solver++ sampler, but "
                                           "sample.sampler = \"", get_string("sample.sampler"), "\""));
  if (get_int("sample.remask_rounds") > 0 && get_string("sample.sampler").rfind("dpm++", 0) != 0)
    fail_keys("sample.remask_rounds", str_cat("sample.remask_rounds = ", get_int("sample.remask_rounds"),
                                              " needs a DPM-Solver++ sampler, but sample.sampler = \"",
                                              get_string("sample.sampler"), "\""));
}

const Value& Config::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) fail("internal error: no configuration key \"", key, "\"");
  return it->second;
}

namespace {
const Value& typed(const Config& c, const std::string& key, ValueType type) {
  const Value& v = c.get(key);
  if (v.type != type) fail("internal error: configuration key \"", key, "\" is not ", value_type_name(type));
  return v;
}
}  // namespace

bool Config::get_bool(const std::string& key) const { return typed(*this, key, ValueType::boolean).b; }
int64_t Config::get_int(const std::string& key) const { return typed(*this, key, ValueType::integer).i; }
double Config::get_float(const std::string& key) const {
  const Value& v = get(key);
  if (v.type == ValueType::integer) return static_cast<double>(v.i);
  return typed(*this, key, ValueType::real).d;
}
const std::string& Config::get_string(const std::string& key) const { return typed(*this, key, ValueType::string).s; }
const std::vector<int64_t>& Config::get_int_list(const std::string& key) const {
  return typed(*this, key, ValueType::int_list).list;
}
const std::string& Config::origin(const std::string& key) const {
  auto it = origins_.find(key);
  if (it == origins_.end()) fail("internal error: no configuration key \"", key, "\"");
  return it->second;
}

std::string Config::to_toml(bool docs) const {
  std::ostringstream os;
  std::string section;
  for (const auto& spec : config_schema()) {
    std::string sec = spec.key.substr(0, spec.key.find('.'));
    if (sec != section) {
      os << (section.empty() ? "" : "\n") << "[" << sec << "]\n";
      section = sec;
    }
    if (docs) os << "# " << spec.doc << "\n";
    os << spec.key.substr(sec.size() + 1) << " = " << get(spec.key).to_toml() << "\n";
  }
  return os.str();
}

std::string config_schema_markdown() {
  std::ostringstream os;
  os << "# Configuration reference\n\n"
     << "Generated by `moe-diffuseq config schema` from `src/core/config_schema.cpp`; do not edit by hand.\n"
     << "Every key has a default, so a configuration file holds only what differs. Set keys in a TOML file\n"
     << "(`--config F.toml`) or on the command line (`--set section.key=value`, applied after the file).\n"
     << "`moe-diffuseq config show --config F.toml [--set ...]` prints the resolved configuration.\n";
  std::string section;
  for (const auto& spec : config_schema()) {
    std::string sec = spec.key.substr(0, spec.key.find('.'));
    if (sec != section) {
      os << "\n## [" << sec << "]\n\n| key | type | default | meaning |\n|---|---|---|---|\n";
      section = sec;
    }
    std::string type = value_type_name(spec.default_value.type);
    type = type.substr(type.find(' ') + 1);
    if (!spec.choices.empty()) {
      type = "one of";
      for (std::size_t k = 0; k < spec.choices.size(); ++k) type += (k ? ", `" : " `") + spec.choices[k] + "`";
    }
    os << "| `" << spec.key.substr(sec.size() + 1) << "` | " << type << " | `" << spec.default_value.to_toml()
       << "` | " << spec.doc << " |\n";
  }
  return os.str();
}

}  // namespace mds
