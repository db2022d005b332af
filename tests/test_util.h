// Helpers shared by the tests: temporary directories and small files.
#pragma once

#include <string>

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

}  // namespace mds::test
