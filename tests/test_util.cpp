#include "test_util.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/fs.h"

namespace mds::test {

TempDir::TempDir() : path_(fs::make_temp_directory("mds-test-")) {}

TempDir::~TempDir() { fs::remove_all_noexcept(path_); }

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

std::string source_path(const std::string& relative) {
#ifdef MDS_SOURCE_DIR
  return std::string(MDS_SOURCE_DIR) + "/" + relative;
#else
  return relative;
#endif
}

}  // namespace mds::test
