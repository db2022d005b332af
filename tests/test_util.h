// Helpers shared by the tests: temporary directories and small files.
#pragma once

#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace mds::test {

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);
// Path to a file of the project's source tree (fixtures committed under tests/fixtures).
std::string source_path(const std::string& relative);

// The metric conformance vectors (shared/metrics/README.md): $MDS_METRIC_VECTORS when set, else the
// shared directory's vectors.jsonl beside the source tree, else the compressed copy committed under
// tests/fixtures (so a clean clone checks them too).
std::string metric_vectors_path();
// The non-empty lines of a text file, plain or compressed (data::LineReader); throws when unreadable.
std::vector<std::string> read_lines(const std::string& path);

// The C++ and CUDA sources (.h .hpp .cpp .cu .cuh) below the given top-level folders of the source
// tree, as paths relative to it ("src/core/fs.cpp"), sorted.
std::vector<std::string> source_files(const std::vector<std::string>& tops);

// The message of the exception `fn` throws (mds::Error, c10::Error or any std::exception); a test
// failure, and "", when it throws nothing.
std::string error_of(const std::function<void()>& fn);

}  // namespace mds::test
