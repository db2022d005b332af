#include "metrics/eval_inputs.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "core/strings.h"
#include "data/line_reader.h"

namespace mds::metrics {

namespace {

using json = nlohmann::json;

const char* json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

// "id \"x\" (P.jsonl:12)" for messages.
std::string where(const std::string& file, std::size_t line, const std::string& id) {
  return str_cat("id \"", id, "\" (", file, ":", line, ")");
}

bool all_have_ids(const std::vector<PredictionRecord>& records) {
  return std::all_of(records.begin(), records.end(),
                     [](const PredictionRecord& r) { return !r.id.empty(); });
}

// id -> index; duplicate ids are errors.
template <typename Record>
std::unordered_map<std::string, std::size_t> index_ids(const std::string& file,
                                                       const std::vector<Record>& records) {
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < records.size(); ++i) {
    auto [it, inserted] = index.emplace(records[i].id, i);
    if (!inserted)
      fail(file, ":", records[i].line, ": duplicate id \"", records[i].id, "\" (first on line ",
           records[it->second].line, ")");
  }
  return index;
}

}  // namespace

std::vector<std::string> merge_references(bool has_first, const std::string& first,
                                          const std::vector<std::string>& refs) {
  std::vector<std::string> out;
  if (!has_first) return refs;
  out.push_back(first);
  bool dropped = false;
  for (const std::string& r : refs) {
    if (!dropped && r == first) {
      dropped = true;
      continue;
    }
    out.push_back(r);
  }
  return out;
}

std::vector<PredictionRecord> read_predictions(const std::string& path) {
  // Plain, .gz or .zst, as every jsonl the project reads (LineReader drops a BOM and '\r').
  data::LineReader in(path);
  std::vector<PredictionRecord> out;
  std::string line;
  while (in.next(line)) {
    const std::size_t n = in.line_number();
    if (trim(line).empty()) continue;
    const std::size_t bad = find_invalid_utf8(line);
    if (bad != std::string::npos) fail(path, ":", n, ": invalid UTF-8 at byte ", bad + 1);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {  // parse_error, and out_of_range for a number past double
      fail(path, ":", n, ": malformed JSON (", e.what(), ")");
    }
    if (!j.is_object()) fail(path, ":", n, ": expected a JSON object, got ", json_type_name(j));

    PredictionRecord r;
    r.line = n;
    auto string_field = [&](const char* name, bool required, std::string& value) {
      auto it = j.find(name);
      if (it == j.end()) {
        if (required) fail(path, ":", n, ": field \"", name, "\" is missing");
        return false;
      }
      if (!it->is_string())
        fail(path, ":", n, ": field \"", name, "\": expected a string, got ", json_type_name(*it));
      value = it->get<std::string>();
      return true;
    };
    string_field("prediction", true, r.prediction);
    string_field("src", false, r.src);
    auto id = j.find("id");
    if (id != j.end()) {
      if (id->is_string())
        r.id = id->get<std::string>();
      else if (id->is_number_integer())
        r.id = id->dump();
      else
        fail(path, ":", n, ": field \"id\": expected a string or an integer, got ",
             json_type_name(*id));
    }
    std::string reference;
    const bool has_reference = string_field("reference", false, reference);
    std::vector<std::string> refs;
    auto list = j.find("refs");
    if (list != j.end()) {
      if (!list->is_array())
        fail(path, ":", n, ": field \"refs\": expected an array of strings, got ",
             json_type_name(*list));
      for (std::size_t i = 0; i < list->size(); ++i) {
        const json& item = (*list)[i];
        if (!item.is_string())
          fail(path, ":", n, ": field \"refs\": item ", i, ": expected a string, got ",
               json_type_name(item));
        refs.push_back(item.get<std::string>());
      }
    }
    r.refs = merge_references(has_reference, reference, refs);
    out.push_back(std::move(r));
  }
  if (out.empty()) fail(path, ": no predictions (the file is empty)");
  return out;
}

EvalSet align_inputs(const std::vector<std::string>& prediction_files,
                     const std::vector<std::vector<PredictionRecord>>& predictions,
                     const std::string& reference_file,
                     const std::vector<ReferenceRecord>* references, bool require_references) {
  MDS_CHECK(!predictions.empty() && predictions.size() == prediction_files.size(),
            "eval: no predictions file");
  const std::string& first_file = prediction_files[0];
  const std::vector<PredictionRecord>& first = predictions[0];
  for (std::size_t f = 0; f < predictions.size(); ++f)
    MDS_CHECK(!predictions[f].empty(), prediction_files[f], ": no predictions (the file is empty)");

  EvalSet set;
  set.prediction_files = prediction_files;
  set.reference_file = reference_file;
  const std::size_t n = first.size();

  // Ids are checked for duplicates wherever they are complete, since matching relies on them.
  bool by_id = true;
  for (std::size_t f = 0; f < predictions.size(); ++f) {
    if (all_have_ids(predictions[f]))
      index_ids(prediction_files[f], predictions[f]);
    else
      by_id = false;
  }
  if (references != nullptr) {
    MDS_CHECK(!references->empty(), reference_file, ": no references (the file is empty)");
    const bool refs_have_ids = std::all_of(references->begin(), references->end(),
                                           [](const ReferenceRecord& r) { return !r.id.empty(); });
    by_id = by_id && refs_have_ids;
  }
  set.matched_by = by_id ? "id" : "line";

  // Order of the other files' records relative to the first file's.
  set.predictions.assign(predictions.size(), std::vector<std::string>(n));
  for (std::size_t f = 0; f < predictions.size(); ++f) {
    const auto& records = predictions[f];
    if (records.size() != n)
      fail(prediction_files[f], " has ", records.size(), " predictions but ", first_file, " has ",
           n, by_id ? "" : " (matched by line, since not every line has an \"id\")");
    if (by_id) {
      const auto index = index_ids(prediction_files[f], records);
      for (std::size_t i = 0; i < n; ++i) {
        auto it = index.find(first[i].id);
        if (it == index.end())
          fail(prediction_files[f], " has no prediction for ",
               where(first_file, first[i].line, first[i].id));
        set.predictions[f][i] = records[it->second].prediction;
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) set.predictions[f][i] = records[i].prediction;
    }
  }

  set.ids.resize(n);
  set.sources.resize(n);
  set.references.resize(n);
  set.lines.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    set.ids[i] = first[i].id;
    set.sources[i] = first[i].src;
    set.references[i] = first[i].refs;
    set.lines[i] = first[i].line;
  }

  if (references != nullptr) {
    const auto& refs = *references;
    if (refs.size() != n)
      fail(reference_file, " has ", refs.size(), " references but ", first_file, " has ", n,
           " predictions", by_id ? "" : " (matched by line, since not every line has an \"id\")");
    if (by_id) {
      const auto index = index_ids(reference_file, refs);
      for (std::size_t i = 0; i < n; ++i) {
        auto it = index.find(first[i].id);
        if (it == index.end())
          fail(reference_file, " has no reference for ",
               where(first_file, first[i].line, first[i].id));
        set.references[i] = refs[it->second].refs;
        if (set.sources[i].empty()) set.sources[i] = refs[it->second].src;
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        set.references[i] = refs[i].refs;
        if (set.sources[i].empty()) set.sources[i] = refs[i].src;
      }
    }
  }

  if (require_references) {
    for (std::size_t i = 0; i < n; ++i) {
      if (set.references[i].empty())
        fail(first_file, ":", first[i].line,
             ": no reference for this prediction (give --references, "
             "or a \"reference\" or \"refs\" field)");
    }
  }
  return set;
}

}  // namespace mds::metrics
