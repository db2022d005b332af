// The jsonl reader for {"src", "trg"} pairs, one JSON object a line.
//
// Accepted: blank lines, a BOM, CRLF line ends, any Unicode, extra fields (ignored), an optional
// "id" (string or integer, kept as text) and an optional "refs" (list of extra reference strings).
// Every error names the file, the line and the field:
//   data/train.jsonl:17: field "trg": expected a string, got a number
// Examples whose src or trg is empty (after trimming whitespace) are skipped and counted.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "data/line_reader.h"

namespace mds::data {

struct Example {
  std::string id;                 // "" when the line has none
  std::string src;
  std::string trg;                // "" when absent and not required
  std::vector<std::string> refs;  // extra references ("refs" field), may be empty
  std::size_t line = 0;           // 1-based line in its file
};

struct JsonlOptions {
  bool require_trg = true;  // generation inputs may leave out "trg"
  bool skip_empty = true;   // skip (and count) examples with an empty src or trg
};

struct JsonlStats {
  std::size_t lines = 0;          // lines read, blank ones included
  std::size_t blank = 0;          // blank lines
  std::size_t examples = 0;       // examples returned
  std::size_t empty_src = 0;      // skipped: empty src
  std::size_t empty_trg = 0;      // skipped: empty trg
};

class JsonlReader {
 public:
  explicit JsonlReader(const std::string& path, JsonlOptions options = {});
  // Next valid example; false at the end of the file. Throws mds::Error on a bad line.
  bool next(Example& example);
  const JsonlStats& stats() const { return stats_; }
  const std::string& path() const { return reader_.path(); }
  // The text of the line of the example last returned (without its line end).
  const std::string& line() const { return line_; }
  // "12,345 examples from F (2 blank lines, 3 empty targets skipped)".
  std::string summary() const;

 private:
  LineReader reader_;
  JsonlOptions options_;
  JsonlStats stats_;
  std::string line_;
};

// Reads a whole file (for small files: tests, evaluation, generation inputs).
std::vector<Example> read_jsonl(const std::string& path, JsonlOptions options = {},
                                JsonlStats* stats = nullptr);

// JSON-escapes `text` as a string literal (quotes included), keeping non-ASCII characters as-is.
std::string json_quote(const std::string& text);

}  // namespace mds::data
