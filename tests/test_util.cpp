#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/fs.h"
#include "data/line_reader.h"

namespace mds::test {

namespace {

// CTest counts a test as skipped when its output holds "[  SKIPPED ]" (gtest_discover_tests'
// SKIP_REGULAR_EXPRESSION, which wins over the exit status). GoogleTest prints that both for
// GTEST_SKIP() (a GPU test without a GPU) and for every test of a suite whose SetUpTestSuite failed,
// which would hide the failure as a skip. So a failure outside any test (a suite's or the program's
// set-up) ends the program at once, with status 1, before any such line is printed.
// (Whether a test is running is tracked here: GoogleTest calls OnTestPartResult holding the lock that
// UnitTest::current_test_info() takes.)
class SetUpFailureIsFatal : public ::testing::EmptyTestEventListener {
  bool in_test_ = false;
  void OnTestStart(const ::testing::TestInfo&) override { in_test_ = true; }
  void OnTestEnd(const ::testing::TestInfo&) override { in_test_ = false; }
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed() || in_test_) return;
    std::fprintf(stderr, "\n%s:%d: a failure outside any test (a test suite's set-up): stopping here, "
                         "so that its tests count as failed, not skipped\n",
                 result.file_name() != nullptr ? result.file_name() : "unknown file", result.line_number());
    std::fflush(nullptr);
    std::_Exit(1);
  }
};

const bool kSetUpFailureIsFatal = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new SetUpFailureIsFatal);
  return true;
}();

}  // namespace

TempDir::TempDir() : path_(fs::make_temp_directory("mds-test-")) {}

TempDir::~TempDir() { fs::remove_all_noexcept(path_); }

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) { return fs::read_file(path); }

namespace {

bool has_source_suffix(const std::string& name) {
  for (const std::string suffix : {".h", ".hpp", ".cpp", ".cu", ".cuh"}) {
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  }
  return false;
}

void collect_sources(const std::string& dir, const std::string& relative, std::vector<std::string>* out) {
  for (const std::string& name : fs::list_directory(dir)) {
    const std::string path = fs::join(dir, name), rel = fs::join(relative, name);
    if (fs::is_directory(path)) collect_sources(path, rel, out);
    else if (has_source_suffix(name)) out->push_back(rel);
  }
}

}  // namespace

std::vector<std::string> source_files(const std::vector<std::string>& tops) {
  std::vector<std::string> out;
  for (const std::string& top : tops) {
    const std::string dir = source_path(top);
    if (fs::is_directory(dir)) collect_sources(dir, top, &out);
  }
  return out;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

std::string source_path(const std::string& relative) {
#ifdef MDS_SOURCE_DIR
  return std::string(MDS_SOURCE_DIR) + "/" + relative;
#else
  return relative;
#endif
}

std::string metric_vectors_path() {
  if (const char* env = std::getenv("MDS_METRIC_VECTORS")) return env;
  const std::string shared = source_path("../shared/metrics/vectors.jsonl");
  if (fs::exists(shared)) return shared;
  return source_path("tests/fixtures/metric-vectors.jsonl.zst");
}

std::vector<std::string> read_lines(const std::string& path) {
  data::LineReader reader(path);
  std::vector<std::string> lines;
  std::string line;
  while (reader.next(line)) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

}  // namespace mds::test
