// Reads a text file line by line as a stream, whatever its compression: plain, .gz or .zst
// (chosen by the file's magic bytes, not its name), or standard input for "-".
// Memory stays bounded by the longest line, so multi-gigabyte corpora are fine.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace mds::data {

class LineReader {
 public:
  explicit LineReader(const std::string& path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Next line without its '\n' (a trailing '\r' is removed too). False at end of file.
  // A UTF-8 byte-order mark at the start of the file is dropped.
  bool next(std::string& line);

  // 1-based number of the line last returned by next().
  std::size_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }

 private:
  struct Source;  // the decompressor behind the stream
  bool refill();

  std::string path_;
  std::unique_ptr<Source> source_;
  std::string buffer_;
  std::size_t pos_ = 0;
  bool eof_ = false;
  std::size_t line_number_ = 0;
};

}  // namespace mds::data
