// The inputs of `moe-diffuseq eval`: prediction files (as `generate` writes them) and optional
// references, aligned item by item by id or by line, with errors that name file, line and id.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mds::metrics {

// One line of a predictions file: {"id", "src", "prediction", "reference" (string) and/or "refs"
// (list of strings)}; only "prediction" is required.
struct PredictionRecord {
  std::string id;  // "" when absent; an integer id is kept as its decimal text
  std::string src;
  std::string prediction;
  std::vector<std::string> refs;  // merge_references("reference", "refs"); may be empty
  std::size_t line = 0;           // 1-based
};

// Reads a predictions jsonl. Blank lines, a UTF-8 BOM, CRLF and unknown fields are accepted.
// Errors name the file, the line and the field:  P.jsonl:3: field "prediction" is missing
// A file without any prediction is an error.
std::vector<PredictionRecord> read_predictions(const std::string& path);

// The reference list of an item that has a main reference (`trg` / "reference") and a "refs"
// list: datasets repeat the main reference inside refs (wiki-simplification's refs[0] == trg) or
// list only the extra ones; either way the result is the main reference followed by refs with
// one copy of it removed. An empty main reference counts only when `has_first`.
std::vector<std::string> merge_references(bool has_first, const std::string& first,
                                          const std::vector<std::string>& refs);

// One item of a --references file (a dataset jsonl read with data/jsonl.h).
struct ReferenceRecord {
  std::string id;
  std::string src;
  std::vector<std::string> refs;  // merge_references(trg, refs)
  std::size_t line = 0;
};

// Everything evaluation needs, aligned: item i has sources[i], references[i] and, for every
// predictions file f, predictions[f][i].
struct EvalSet {
  std::vector<std::string> prediction_files;
  std::string reference_file;  // "" when the references came with the predictions
  std::string matched_by;      // "id" or "line"
  std::vector<std::string> ids;
  std::vector<std::string> sources;
  std::vector<std::vector<std::string>> references;
  std::vector<std::vector<std::string>> predictions;  // [file][item]
  std::vector<std::size_t> lines;                     // line of item i in the first file
};

// Aligns the predictions files with each other and with the references:
//  - by id when every record on both sides has one (ids must be unique in a file, and every id
//    must be found on the other side), otherwise by line (position);
//  - item counts must agree; empty inputs are errors;
//  - `references` (from --references) replace the predictions' own references; without them,
//    the first file's "reference" / "refs" are used;
//  - with `require_references`, an item without any reference is an error.
// The order of items is the first predictions file's.
EvalSet align_inputs(const std::vector<std::string>& prediction_files,
                     const std::vector<std::vector<PredictionRecord>>& predictions,
                     const std::string& reference_file,
                     const std::vector<ReferenceRecord>* references, bool require_references);

}  // namespace mds::metrics
