// The trivial baselines of `data baseline` and the quality race: most frequent target, copy, first k
// words (k = the median target length).
#include "data/baseline.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "test_util.h"

namespace mds::data {
namespace {

using test::error_of;

const char* kTrain =
    "{\"src\": \"a b c d e f\", \"trg\": \"x y\"}\n"
    "{\"src\": \"g h\", \"trg\": \"p q r s\"}\n"
    "{\"src\": \"i j k\", \"trg\": \"x y\"}\n";

TEST(Baseline, MostFrequentCopyAndFirstWords) {
  test::TempDir dir;
  test::write_file(dir.file("train.jsonl"), kTrain);
  test::write_file(dir.file("in.jsonl"), "{\"src\": \"  one two   three four \", \"trg\": \"ref\", \"id\": \"q1\"}\n"
                                         "{\"src\": \"five\"}\n");
  EXPECT_EQ(most_frequent_target(dir.file("train.jsonl")), "x y");
  EXPECT_EQ(median_target_words(dir.file("train.jsonl")), 2u);  // lengths 2, 4, 2
  EXPECT_EQ(first_words(" one two   three four ", 2), "one two");
  EXPECT_EQ(first_words("one", 5), "one");
  EXPECT_EQ(first_words("one two", 0), "");

  auto predictions = [&](BaselineKind kind, std::size_t k) {
    const BaselineStats s =
        write_baseline_predictions(kind, dir.file("train.jsonl"), dir.file("in.jsonl"), dir.file("out.jsonl"), k);
    EXPECT_EQ(s.predictions, 2u);
    return s.description;
  };
  EXPECT_EQ(predictions(BaselineKind::most_frequent, 0), "the most frequent target \"x y\"");
  const std::string text = test::read_file(dir.file("out.jsonl"));
  EXPECT_NE(text.find("\"id\": \"q1\", \"src\": \"  one two   three four \", \"prediction\": \"x y\", "
                      "\"reference\": \"ref\""), std::string::npos) << text;
  EXPECT_EQ(predictions(BaselineKind::copy, 0), "copy the source");
  EXPECT_NE(test::read_file(dir.file("out.jsonl")).find("\"prediction\": \"five\""), std::string::npos);
  EXPECT_EQ(predictions(BaselineKind::first_k, 0), "first 2 source words");
  EXPECT_NE(test::read_file(dir.file("out.jsonl")).find("\"prediction\": \"one two\""), std::string::npos);
  EXPECT_EQ(predictions(BaselineKind::first_k, 3), "first 3 source words");
  EXPECT_NE(test::read_file(dir.file("out.jsonl")).find("\"prediction\": \"one two three\""), std::string::npos);
}

TEST(Baseline, UnknownKindNamesTheChoices) {
  const std::string msg = error_of([] { parse_baseline_kind("first"); });
  EXPECT_NE(msg.find("most-frequent, copy or first-k"), std::string::npos) << msg;
  EXPECT_EQ(parse_baseline_kind("first-k"), BaselineKind::first_k);
}

}  // namespace
}  // namespace mds::data
