// Configuration: a fixed schema of typed keys with defaults (config_schema.cpp), filled from TOML
// files and `--set section.key=value` overrides, validated, and printable as TOML.
//
// Every key has a default, so an empty file is a valid configuration. Unknown keys and wrong types
// are errors that name the key, where it was written, and the closest known key:
//   configs/x.toml:4: unknown key "model.layer"; did you mean "model.layers"?
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mds {

enum class ValueType { boolean, integer, real, string, int_list };
const char* value_type_name(ValueType type);  // "a boolean", "an integer", ...

struct Value {
  ValueType type = ValueType::integer;
  bool b = false;
  int64_t i = 0;
  double d = 0.0;
  std::string s;
  std::vector<int64_t> list;

  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value real(double v);
  static Value string(std::string v);
  static Value int_list(std::vector<int64_t> v);
  std::string to_toml() const;  // the value as TOML text: true, 12, 0.0001, "sqrt", [1, 2]
  bool operator==(const Value& other) const;
};

struct KeySpec {
  std::string key;   // "section.name"
  Value default_value;
  std::string doc;   // one sentence: what it does, units, special values
  std::vector<std::string> choices;  // allowed strings (string keys), empty = any
  double min = -1e300, max = 1e300;  // inclusive bounds for numbers and list entries
};

// The schema, in the order sections and keys are printed.
const std::vector<KeySpec>& config_schema();
const KeySpec* find_key_spec(const std::string& key);

class Config {
 public:
  Config();  // all defaults

  // Defaults, then the file (if non-empty), then each "section.key=value" override; validated.
  static Config load(const std::string& path, const std::vector<std::string>& overrides = {});

  // Merges TOML text; `origin` names it in errors (a path, or "--set").
  void merge_toml(const std::string& text, const std::string& origin);
  void merge_file(const std::string& path);
  void set(const std::string& assignment);  // "section.key=value"; value in TOML syntax, bare strings ok
  void validate() const;                    // cross-key checks; throws mds::Error naming the keys

  bool get_bool(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // integer keys are widened
  const std::string& get_string(const std::string& key) const;
  const std::vector<int64_t>& get_int_list(const std::string& key) const;
  const Value& get(const std::string& key) const;
  // Where a value came from: "default", a file path, or "--set".
  const std::string& origin(const std::string& key) const;

  // The resolved configuration as TOML; with `docs`, each key is preceded by its documentation.
  std::string to_toml(bool docs = false) const;

 private:
  void assign(const std::string& key, Value value, const std::string& where);
  std::map<std::string, Value> values_;
  std::map<std::string, std::string> origins_;
};

// The schema as a markdown reference (docs/config.md is this text; a test keeps them equal).
std::string config_schema_markdown();

}  // namespace mds
