// The layers of design.md section 3 as the includes see them: a folder includes only from the layers
// below it (docs/architecture.md draws them). CMake's mds_layer_check_* programs prove the same for
// the linker; this test also catches header-only uses, and names the file and line.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace mds {
namespace {

// Each folder and the folders it may include from (itself included).
const std::map<std::string, std::set<std::string>>& allowed() {
  static const std::map<std::string, std::set<std::string>> layers = [] {
    std::map<std::string, std::set<std::string>> m;
    m["core"] = {"core"};
    m["data"] = {"core", "data"};
    m["metrics"] = {"core", "data", "metrics"};  // data: the compressed line reader
    m["kernels"] = {"core", "kernels"};
    m["runtime"] = {"core", "runtime"};
    m["io"] = {"core", "io"};
    m["model"] = {"core", "data", "kernels", "model"};
    m["diffusion"] = {"core", "data", "kernels", "model", "diffusion"};
    m["infer"] = {"core", "data", "metrics", "kernels", "runtime", "io", "model", "diffusion", "infer"};
    m["train"] = {"core", "data", "metrics", "kernels", "runtime", "io", "model", "diffusion", "infer", "train"};
    m["cli"] = {"core", "data", "metrics", "kernels", "runtime", "io", "model", "diffusion", "infer", "train", "cli"};
    m["bench"] = {"core", "data", "metrics", "kernels", "runtime", "io", "model", "diffusion", "infer", "train",
                  "bench"};
    m["tests"] = m["bench"];
    return m;
  }();
  return layers;
}

// "src/model/x.cpp" -> "model", "kernels/moe/moe.cpp" -> "kernels", "bench/x.cpp" -> "bench". A
// kernel's benchmark and test are programs above every library layer, not part of kernels.
std::string layer_of(const std::string& path) {
  auto ends_with = [&](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with("_bench.cpp")) return "bench";
  if (ends_with("_test.cpp")) return "tests";
  const auto first = path.find('/');
  const std::string top = path.substr(0, first);
  if (top != "src") return top;
  const auto second = path.find('/', first + 1);
  return path.substr(first + 1, second - first - 1);
}

TEST(Layering, NoIncludeRunsUpward) {
  const std::vector<std::string> files = test::source_files({"src", "kernels", "bench"});
  ASSERT_GT(files.size(), 50u);
  std::vector<std::string> offenders;
  std::set<std::string> layers_seen;
  for (const std::string& file : files) {
    const std::string layer = layer_of(file);
    const auto rules = allowed().find(layer);
    if (rules == allowed().end()) {
      offenders.push_back(file + ": folder \"" + layer + "\" is not a known layer (add it to this test)");
      continue;
    }
    layers_seen.insert(layer);
    std::istringstream in(test::read_file(test::source_path(file)));
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      const std::string prefix = "#include \"";
      if (line.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string target = line.substr(prefix.size(), line.find('"', prefix.size()) - prefix.size());
      const auto slash = target.find('/');
      if (slash == std::string::npos) continue;  // a header beside the file
      const std::string to = target.substr(0, slash);
      if (allowed().count(to) == 0) continue;  // not a project folder (e.g. a system header in quotes)
      if (rules->second.count(to) == 0)
        offenders.push_back(file + ":" + std::to_string(number) + ": " + layer + " includes " + target);
    }
  }
  std::string list;
  for (const std::string& o : offenders) list += "\n  " + o;
  EXPECT_TRUE(offenders.empty()) << "includes against the layer order:" << list;
  // The scan saw the tree it guards.
  for (const char* layer : {"core", "data", "model", "diffusion", "infer", "train", "kernels", "bench"})
    EXPECT_EQ(layers_seen.count(layer), 1u) << layer;
}

TEST(Layering, TheTestCanFail) {
  EXPECT_EQ(layer_of("src/infer/generator.cpp"), "infer");
  EXPECT_EQ(layer_of("kernels/moe/moe_grouped.cpp"), "kernels");
  EXPECT_EQ(layer_of("kernels/moe/moe_test.cpp"), "tests");
  EXPECT_EQ(allowed().at("infer").count("train"), 0u);
  EXPECT_EQ(allowed().at("train").count("infer"), 1u);
}

}  // namespace
}  // namespace mds
