#include "infer/http_request.h"

#include <nlohmann/json.hpp>

#include <optional>

#include "core/json_integer.h"

namespace mds::infer {

using nlohmann::json;

ApiLimits api_limits_from_config(const Config& c) {
  ApiLimits l;
  l.max_inputs = static_cast<std::size_t>(c.get_int("serve.max_inputs"));
  l.max_source_bytes = static_cast<std::size_t>(c.get_int("serve.max_source_bytes"));
  l.max_body_bytes = static_cast<std::size_t>(c.get_int("serve.max_body_bytes"));
  l.max_steps = c.get_int("serve.max_steps");
  l.max_mbr = c.get_int("serve.max_mbr");
  return l;
}

namespace {

[[noreturn]] void bad(const std::string& what) { throw ApiError(400, what); }

int64_t integer_field(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json& v = body.at(name);
  if (!v.is_number_integer()) bad(str_cat("\"", name, "\" must be an integer, got ", v.type_name()));
  const std::optional<int64_t> x = json_integer<int64_t>(v);
  if (!x || *x < lo || *x > hi) bad(str_cat("\"", name, "\" must be in [", lo, ", ", hi, "], got ", v.dump()));
  return *x;
}

double number_field(const json& body, const char* name) {
  const json& v = body.at(name);
  if (!v.is_number()) bad(str_cat("\"", name, "\" must be a number, got ", v.type_name()));
  return v.get<double>();
}

bool boolean_field(const json& body, const char* name) {
  const json& v = body.at(name);
  if (!v.is_boolean()) bad(str_cat("\"", name, "\" must be true or false, got ", v.type_name()));
  return v.get<bool>();
}

std::string source_field(const json& v, const std::string& where, const ApiLimits& limits) {
  if (!v.is_string()) bad(str_cat(where, " must be a string, got ", v.type_name()));
  std::string s = v.get<std::string>();
  if (s.size() > limits.max_source_bytes)
    bad(str_cat(where, " has ", s.size(), " bytes; the limit is ", limits.max_source_bytes, " (serve.max_source_bytes)"));
  return s;
}

}  // namespace

GenerateRequest parse_generate_request(const std::string& text, const GenerateOptions& defaults, const ApiLimits& limits) {
  if (text.size() > limits.max_body_bytes)
    throw ApiError(413, str_cat("the body has ", text.size(), " bytes; the limit is ", limits.max_body_bytes,
                                " (serve.max_body_bytes)"));
  json body;
  try {
    body = json::parse(text);  // rejects invalid UTF-8 in strings
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number past double
    bad(str_cat("the body is not valid JSON: ", e.what()));
  }
  if (!body.is_object()) bad(str_cat("the body must be a JSON object, got ", body.type_name()));
  static const char* known[] = {"src",    "inputs",        "steps",           "sampler",           "seed",
                                "mbr",    "mbr_source",    "mbr_noise_share", "mbr_compact_share", "start_time",
                                "length", "remask_rounds", "rewrite_threshold", "stream"};
  for (const auto& [key, value] : body.items()) {
    bool ok = false;
    std::string names;
    for (const char* k : known) {
      ok = ok || key == k;
      names += names.empty() ? k : str_cat(", ", k);
    }
    if (!ok) bad(str_cat("unknown field \"", key, "\" (known: ", names, ")"));
  }
  GenerateRequest r;
  const bool has_src = body.contains("src"), has_inputs = body.contains("inputs");
  if (has_src == has_inputs) bad("give either \"src\" (one source) or \"inputs\" (a list of sources)");
  if (has_src) {
    r.single = true;
    r.sources.push_back(source_field(body["src"], "\"src\"", limits));
  } else {
    const json& inputs = body["inputs"];
    if (!inputs.is_array()) bad(str_cat("\"inputs\" must be a list of strings, got ", inputs.type_name()));
    if (inputs.empty()) bad("\"inputs\" is empty");
    if (inputs.size() > limits.max_inputs)
      bad(str_cat("\"inputs\" has ", inputs.size(), " sources; the limit is ", limits.max_inputs, " (serve.max_inputs)"));
    for (std::size_t i = 0; i < inputs.size(); ++i)
      r.sources.push_back(source_field(inputs[i], str_cat("\"inputs\"[", i, "]"), limits));
  }
  r.options = defaults;
  if (body.contains("steps")) r.options.sampler.steps = integer_field(body, "steps", 1, limits.max_steps);
  if (body.contains("mbr")) r.options.mbr = integer_field(body, "mbr", 1, limits.max_mbr);
  // Each round is one more solve: bounded as the key sample.remask_rounds is.
  if (body.contains("remask_rounds")) r.options.remask_rounds = integer_field(body, "remask_rounds", 0, 16);
  if (body.contains("seed")) r.options.seed = static_cast<uint64_t>(integer_field(body, "seed", 0, int64_t{1} << 53));
  if (body.contains("sampler")) {
    const json& v = body["sampler"];
    if (!v.is_string()) bad(str_cat("\"sampler\" must be a string, got ", v.type_name()));
    const std::string name = v.get<std::string>();
    if (name != "dpm++2m" && name != "dpm++3m" && name != "ddim" && name != "ancestral")
      bad(str_cat("\"sampler\" must be one of dpm++2m, dpm++3m, ddim, ancestral, got \"", name, "\""));
    r.options.sampler.sampler = name;
  }
  if (body.contains("mbr_source")) r.options.mbr_source = boolean_field(body, "mbr_source");
  if (body.contains("stream")) r.stream = boolean_field(body, "stream");
  if (body.contains("mbr_noise_share")) r.options.mbr_noise_share = number_field(body, "mbr_noise_share");
  if (body.contains("mbr_compact_share")) r.options.mbr_compact_share = number_field(body, "mbr_compact_share");
  if (body.contains("rewrite_threshold")) r.options.rewrite_threshold = number_field(body, "rewrite_threshold");
  if (body.contains("start_time")) r.options.sampler.start_time = number_field(body, "start_time");
  if (body.contains("length")) {
    const json& v = body["length"];
    if (!v.is_string() || (v.get<std::string>() != "predict" && v.get<std::string>() != "source"))
      bad(str_cat("\"length\" must be \"predict\" or \"source\", got ", v.dump()));
    r.options.length = v.get<std::string>();
  }
  try {
    check_generate_options(r.options);  // e.g. a start time below 1 with a sampler other than DPM-Solver++
  } catch (const Error& e) {
    bad(e.what());
  }
  return r;
}

}  // namespace mds::infer
