#include "fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <set>

namespace mds::fuzz {

namespace {

// Never destroyed: remove_scratch runs among the exit handlers, after static destructors may have.
std::set<std::string>& written() {
  static auto* paths = new std::set<std::string>;
  return *paths;
}

// At exit (libFuzzer ends with exit()): the files, then the directory.
void remove_scratch() {
  for (const std::string& path : written()) std::remove(path.c_str());
  rmdir(scratch_dir().c_str());
}

}  // namespace

const std::string& scratch_dir() {
  static const std::string& dir = *new std::string([] {
    std::string pattern = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + std::string("/mds-fuzz-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    std::atexit(remove_scratch);
    return pattern;
  }());
  return dir;
}

std::string write_scratch(const std::string& name, const uint8_t* data, std::size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  written().insert(path);
  return path;
}

}  // namespace mds::fuzz
