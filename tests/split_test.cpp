// `data split`: the examples set aside (the last N, or N at random from a seed), the lines copied as
// they are, compressed inputs, and errors that name the file and the line.
#include "data/split.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/fs.h"
#include "test_util.h"

namespace mds::data {
namespace {

using test::error_of;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string example(int i) {
  return "{\"src\": \"source " + std::to_string(i) + "\", \"trg\": \"target " + std::to_string(i) + "\", \"id\": " +
         std::to_string(i) + "}";
}

TEST(Split, TheLastExamplesAsTheyAre) {
  test::TempDir dir;
  const std::string odd = "{\"trg\": \"t\",  \"src\": \"s\", \"extra\": [1, 2]}";  // kept byte for byte
  test::write_file(dir.file("in.jsonl"), example(0) + "\n\n" + odd + "\n{\"src\": \"x\", \"trg\": \"  \"}\n" +
                                             example(3) + "\r\n" + example(4));
  const SplitStats s = split_examples(dir.file("in.jsonl"), {2, std::nullopt}, dir.file("a.jsonl"), dir.file("b.jsonl"));
  EXPECT_EQ(s.train, 2u);
  EXPECT_EQ(s.holdout, 2u);
  EXPECT_EQ(s.skipped, 2u);  // the blank line and the empty target
  EXPECT_EQ(test::read_file(dir.file("a.jsonl")), example(0) + "\n" + odd + "\n");
  EXPECT_EQ(test::read_file(dir.file("b.jsonl")), example(3) + "\n" + example(4) + "\n");
}

TEST(Split, ARandomChoiceFromASeedKeepsTheOrder) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 20; ++i) text += example(i) + "\n";
  // Compressed input, chosen by its bytes, not its name.
  std::string packed(ZSTD_compressBound(text.size()), '\0');
  packed.resize(ZSTD_compress(&packed[0], packed.size(), text.data(), text.size(), 3));
  test::write_file(dir.file("in.jsonl.zst"), packed);

  auto held_ids = [&](uint64_t seed) {
    const SplitStats s = split_examples(dir.file("in.jsonl.zst"), {5, seed}, dir.file("a.jsonl"), dir.file("b.jsonl"));
    EXPECT_EQ(s.train, 15u);
    EXPECT_EQ(s.holdout, 5u);
    const std::vector<std::string> a = lines_of(test::read_file(dir.file("a.jsonl")));
    const std::vector<std::string> b = lines_of(test::read_file(dir.file("b.jsonl")));
    std::vector<int> ids;
    std::set<std::string> all(a.begin(), a.end());
    for (const std::string& line : b) {
      all.insert(line);
      ids.push_back(std::stoi(line.substr(line.rfind(':') + 1)));
    }
    EXPECT_EQ(all.size(), 20u);  // every example in exactly one output
    return ids;
  };
  const std::vector<int> one = held_ids(1);
  EXPECT_EQ(held_ids(1), one);  // the same seed, the same choice
  EXPECT_NE(held_ids(2), one);
  for (std::size_t i = 1; i < one.size(); ++i) EXPECT_LT(one[i - 1], one[i]);  // the file's order
  // mt19937_64 is the same on every standard library, and so is this choice.
  EXPECT_EQ(one, (std::vector<int>{0, 4, 8, 12, 15}));
}

TEST(Split, ErrorsNameTheFileAndTheLine) {
  test::TempDir dir;
  test::write_file(dir.file("in.jsonl"), example(0) + "\n" + example(1) + "\n");
  const std::string all = error_of([&] {
    split_examples(dir.file("in.jsonl"), {2, std::nullopt}, dir.file("a.jsonl"), dir.file("b.jsonl"));
  });
  EXPECT_NE(all.find("in.jsonl: --holdout 2 leaves no training example (the file has 2)"), std::string::npos) << all;
  const std::string none = error_of([&] {
    split_examples(dir.file("in.jsonl"), {0, std::nullopt}, dir.file("a.jsonl"), dir.file("b.jsonl"));
  });
  EXPECT_NE(none.find("--holdout must be at least 1"), std::string::npos) << none;
  test::write_file(dir.file("bad.jsonl"), example(0) + "\n{\"src\": 3, \"trg\": \"t\"}\n");
  const std::string bad = error_of([&] {
    split_examples(dir.file("bad.jsonl"), {1, std::nullopt}, dir.file("a.jsonl"), dir.file("b.jsonl"));
  });
  EXPECT_NE(bad.find("bad.jsonl:2: field \"src\""), std::string::npos) << bad;
  const std::string same = error_of([&] {
    split_examples(dir.file("in.jsonl"), {1, std::nullopt}, dir.file("a.jsonl"), dir.file("a.jsonl"));
  });
  EXPECT_NE(same.find("the two outputs are the same file"), std::string::npos) << same;
  const std::string nodir = error_of([&] {
    split_examples(dir.file("in.jsonl"), {1, std::nullopt}, dir.file("a.jsonl"), dir.file("no/b.jsonl"));
  });
  EXPECT_NE(nodir.find("the directory " + dir.file("no") + " does not exist"), std::string::npos) << nodir;
  EXPECT_FALSE(fs::exists(dir.file("a.jsonl")));  // nothing written when one output cannot be
  EXPECT_FALSE(fs::exists(dir.file("b.jsonl")));  // nothing written on an error
}

}  // namespace
}  // namespace mds::data
