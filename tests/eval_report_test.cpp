// `moe-diffuseq eval` without the CLI: reading predictions, aligning them with each other and with
// references (by id, by line, and the errors), and the report built from them.
#include "metrics/eval_report.h"

#include <gtest/gtest.h>

#include <zstd.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "metrics/eval_inputs.h"
#include "test_util.h"

namespace mds::metrics {
namespace {

using test::error_of;

using Strings = std::vector<std::string>;

PredictionRecord rec(const std::string& id, const std::string& prediction, Strings refs = {},
                     std::size_t line = 1) {
  PredictionRecord r;
  r.id = id;
  r.prediction = prediction;
  r.refs = std::move(refs);
  r.line = line;
  return r;
}

TEST(EvalInputs, ReadPredictions) {
  test::TempDir dir;
  const std::string path = dir.file("p.jsonl");
  // BOM, CRLF, a blank line, an integer id, "reference" repeated inside "refs", unknown fields.
  test::write_file(
      path,
      "\xEF\xBB\xBF{\"id\": 7, \"src\": \"s\", \"prediction\": \"p\", \"reference\": \"r\", "
      "\"refs\": [\"r\", \"r2\"], \"x\": 1}\r\n"
      "\n"
      "{\"prediction\": \"\"}\n");
  const auto records = read_predictions(path);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].id, "7");
  EXPECT_EQ(records[0].src, "s");
  EXPECT_EQ(records[0].refs, (Strings{"r", "r2"}));
  EXPECT_EQ(records[1].line, 3u);
  EXPECT_EQ(records[1].prediction, "");
  EXPECT_TRUE(records[1].refs.empty());
}

// Compressed predictions (.zst here; .gz the same reader) read as the plain file does, line numbers
// included.
TEST(EvalInputs, ReadPredictionsCompressed) {
  test::TempDir dir;
  const std::string text = "{\"id\": \"a\", \"prediction\": \"x y\"}\n\n{\"prediction\": \"z\"}\n";
  std::string packed(ZSTD_compressBound(text.size()), '\0');
  packed.resize(ZSTD_compress(&packed[0], packed.size(), text.data(), text.size(), 3));
  test::write_file(dir.file("p.jsonl.zst"), packed);
  test::write_file(dir.file("p.jsonl"), text);
  const auto z = read_predictions(dir.file("p.jsonl.zst"));
  const auto plain = read_predictions(dir.file("p.jsonl"));
  ASSERT_EQ(z.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(z[i].prediction, plain[i].prediction);
    EXPECT_EQ(z[i].id, plain[i].id);
    EXPECT_EQ(z[i].line, plain[i].line);
  }
  EXPECT_EQ(z[1].line, 3u);
}

TEST(EvalInputs, ReadPredictionsErrorsNameFileLineAndField) {
  test::TempDir dir;
  const std::string path = dir.file("p.jsonl");
  test::write_file(path, "{\"prediction\": \"a\"}\n{\"src\": \"b\"}\n");
  EXPECT_EQ(error_of([&] { read_predictions(path); }),
            path + ":2: field \"prediction\" is missing");
  test::write_file(path, "{\"prediction\": 3}\n");
  EXPECT_EQ(error_of([&] { read_predictions(path); }),
            path + ":1: field \"prediction\": expected a string, got a number");
  test::write_file(path, "{\"prediction\": \"a\", \"refs\": [\"x\", 1]}\n");
  EXPECT_EQ(error_of([&] { read_predictions(path); }),
            path + ":1: field \"refs\": item 1: expected a string, got a number");
  test::write_file(path, "{\"prediction\": \"a\"\n");
  EXPECT_NE(error_of([&] { read_predictions(path); }).find(path + ":1: malformed JSON"),
            std::string::npos);
  test::write_file(path, "{\"prediction\": \"a\", \"score\": 1e999}\n");  // past a double
  EXPECT_NE(error_of([&] { read_predictions(path); }).find(path + ":1: malformed JSON"),
            std::string::npos);
  test::write_file(path, "\n\n");
  EXPECT_EQ(error_of([&] { read_predictions(path); }),
            path + ": no predictions (the file is empty)");
  EXPECT_NE(error_of([&] { read_predictions(dir.file("missing.jsonl")); }).find("cannot open"),
            std::string::npos);
}

TEST(EvalInputs, MergeReferences) {
  // wiki-simplification style: refs repeat trg first -> unchanged.
  EXPECT_EQ(merge_references(true, "a", {"a", "b", "a"}), (Strings{"a", "b", "a"}));
  // Extra references only -> trg first.
  EXPECT_EQ(merge_references(true, "a", {"b"}), (Strings{"a", "b"}));
  EXPECT_EQ(merge_references(true, "", {}), (Strings{""}));  // an empty reference is real
  EXPECT_EQ(merge_references(false, "", {"b"}), (Strings{"b"}));
}

TEST(EvalInputs, AlignsFilesById) {
  const std::vector<std::vector<PredictionRecord>> preds = {
      {rec("1", "one", {"r1"}, 1), rec("2", "two", {"r2"}, 2)},
      {rec("2", "TWO", {}, 1), rec("1", "ONE", {}, 2)}};
  const EvalSet set = align_inputs({"a.jsonl", "b.jsonl"}, preds, "", nullptr, true);
  EXPECT_EQ(set.matched_by, "id");
  EXPECT_EQ(set.predictions[1], (Strings{"ONE", "TWO"}));
  EXPECT_EQ(set.references[1], Strings{"r2"});

  auto missing = preds;
  missing[1][0].id = "3";
  EXPECT_EQ(error_of([&] {
              align_inputs({"a.jsonl", "b.jsonl"}, missing, "", nullptr, true);
            }),
            "b.jsonl has no prediction for id \"2\" (a.jsonl:2)");
  auto duplicate = preds;
  duplicate[1][1].id = "2";
  EXPECT_EQ(error_of([&] {
              align_inputs({"a.jsonl", "b.jsonl"}, duplicate, "", nullptr, true);
            }),
            "b.jsonl:2: duplicate id \"2\" (first on line 1)");
}

TEST(EvalInputs, AlignsByLineWithoutIdsAndChecksCounts) {
  const std::vector<std::vector<PredictionRecord>> preds = {
      {rec("", "one", {"r1"}), rec("", "two", {"r2"})}, {rec("", "ONE"), rec("", "TWO")}};
  const EvalSet set = align_inputs({"a.jsonl", "b.jsonl"}, preds, "", nullptr, true);
  EXPECT_EQ(set.matched_by, "line");
  EXPECT_EQ(set.predictions[1], (Strings{"ONE", "TWO"}));

  auto shorter = preds;
  shorter[1].pop_back();
  EXPECT_EQ(
      error_of([&] {
        align_inputs({"a.jsonl", "b.jsonl"}, shorter, "", nullptr, true);
      }),
      "b.jsonl has 1 predictions but a.jsonl has 2 (matched by line, since not every line has an "
      "\"id\")");
  auto no_ref = preds;
  no_ref[0][1].refs.clear();
  no_ref[0][1].line = 5;
  EXPECT_EQ(error_of([&] {
              align_inputs({"a.jsonl", "b.jsonl"}, no_ref, "", nullptr, true);
            }),
            "a.jsonl:5: no reference for this prediction (give --references, or a \"reference\" or "
            "\"refs\" field)");
  // Reference-free metrics do not need them.
  EXPECT_NO_THROW(align_inputs({"a.jsonl", "b.jsonl"}, no_ref, "", nullptr, false));
}

TEST(EvalInputs, ReferencesFileOverridesById) {
  const std::vector<std::vector<PredictionRecord>> preds = {
      {rec("x", "p1", {"old"}), rec("y", "p2")}};
  const std::vector<ReferenceRecord> refs = {{"y", "src y", {"ry"}, 1},
                                             {"x", "src x", {"rx", "rx2"}, 2}};
  const EvalSet set = align_inputs({"p.jsonl"}, preds, "r.jsonl", &refs, true);
  EXPECT_EQ(set.matched_by, "id");
  EXPECT_EQ(set.references[0], (Strings{"rx", "rx2"}));
  EXPECT_EQ(set.references[1], Strings{"ry"});
  EXPECT_EQ(set.sources[1], "src y");  // taken from the references when the predictions have none

  std::vector<ReferenceRecord> other = refs;
  other[0].id = "z";
  EXPECT_EQ(error_of([&] { align_inputs({"p.jsonl"}, preds, "r.jsonl", &other, true); }),
            "r.jsonl has no reference for id \"y\" (p.jsonl:1)");
  std::vector<ReferenceRecord> more = refs;
  more.push_back({"w", "", {"rw"}, 3});
  EXPECT_EQ(error_of([&] { align_inputs({"p.jsonl"}, preds, "r.jsonl", &more, true); }),
            "r.jsonl has 3 references but p.jsonl has 2 predictions");
  // Without ids on the references side, by line.
  std::vector<ReferenceRecord> no_ids = {{"", "", {"first"}, 1}, {"", "", {"second"}, 2}};
  const EvalSet by_line = align_inputs({"p.jsonl"}, preds, "r.jsonl", &no_ids, true);
  EXPECT_EQ(by_line.matched_by, "line");
  EXPECT_EQ(by_line.references[0], Strings{"first"});
  const std::vector<ReferenceRecord> none;
  EXPECT_EQ(error_of([&] { align_inputs({"p.jsonl"}, preds, "r.jsonl", &none, true); }),
            "r.jsonl: no references (the file is empty)");
}

TEST(EvalReport, MetricNames) {
  EXPECT_EQ(parse_metric_list("bleu, rouge1,bleu"), (Strings{"bleu", "rouge1"}));
  const std::string message = error_of([] { parse_metric_list("roug1"); });
  EXPECT_NE(message.find("unknown metric \"roug1\" (did you mean \"rouge1\"?)"), std::string::npos);
  EXPECT_FALSE(needs_references({"dist1", "len"}));
  EXPECT_TRUE(needs_references({"len", "f1"}));
}

TEST(EvalReport, OneFile) {
  EvalSet set;
  set.prediction_files = {"p.jsonl"};
  set.matched_by = "line";
  set.ids = {"1", "2"};
  set.sources = {"s1", "s2"};
  set.references = {{"the cat sat on the mat"}, {"a dog"}};
  set.predictions = {{"the cat sat on the mat", "a dog"}};
  EvalOptions options;
  options.per_example = true;
  const EvalReport report = evaluate(set, options);
  ASSERT_EQ(report.systems.size(), 1u);
  const auto& metrics = report.systems[0].metrics;
  ASSERT_EQ(metrics.size(), default_metrics().size());
  EXPECT_EQ(metrics[0].name, "bleu");
  EXPECT_NEAR(metrics[0].value, 100.0, 1e-9);  // identical texts
  EXPECT_EQ(report.json["systems"][0]["metrics"]["exact"]["value"], 100.0);
  EXPECT_EQ(report.json["systems"][0]["metrics"]["f1"]["scale"], "0-100");
  EXPECT_EQ(report.json["systems"][0]["metrics"]["rouge1"]["value"], 1.0);
  EXPECT_EQ(report.json["systems"][0]["metrics"]["len"]["value"], 4.0);  // (6 + 2) / 2
  EXPECT_EQ(report.json["systems"][0]["metrics"]["bleu"]["signature"],
            "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
  ASSERT_EQ(report.systems[0].per_example.size(), 2u);
  EXPECT_EQ(report.systems[0].per_example[1]["id"], "2");
  EXPECT_EQ(report.systems[0].per_example[1]["scores"]["exact"], true);
  EXPECT_NE(report.table().find("sacreBLEU 2.6.0"), std::string::npos);
  EXPECT_TRUE(report.diversity.empty());
}

TEST(EvalReport, CopiedCountsOutputsEqualToTheirSource) {
  EvalSet set;
  set.prediction_files = {"p.jsonl"};
  set.matched_by = "line";
  set.ids = {"1", "2", "3", "4"};
  set.sources = {"How do I learn German?", "Why is the sky blue?", "What is  AI?", "a b"};
  set.references = {{"r"}, {"r"}, {"r"}, {"r"}};
  // Equal, a word changed, equal up to spacing, a prefix of the source.
  set.predictions = {{"How do I learn German?", "Why is the sea blue?", " What is AI? ", "a"}};
  EvalOptions options;
  options.metrics = {"copied"};
  options.per_example = true;
  const EvalReport report = evaluate(set, options);
  EXPECT_DOUBLE_EQ(report.systems[0].metrics[0].value, 50.0);
  EXPECT_EQ(report.systems[0].per_example[1]["scores"]["copied"], 0.0);
  EXPECT_EQ(report.systems[0].per_example[2]["scores"]["copied"], 100.0);
  EXPECT_FALSE(needs_references({"copied"}));
  set.sources[3] = "";
  EXPECT_EQ(error_of([&] { evaluate(set, options); }),
            "eval: p.jsonl: metric \"copied\" needs each item's source (\"src\"), but item 4 (id \"4\") has none");
  set.lines = {1, 2, 3, 7};  // read from a file: its line too
  EXPECT_EQ(error_of([&] { evaluate(set, options); }),
            "eval: p.jsonl:7: metric \"copied\" needs each item's source (\"src\"), but item 4 (id \"4\") has none");
}

// A rewrite is better (worse) when its token F1 against the references is above (below) the source's.
TEST(EvalReport, RewritesAreCountedBetterOrWorseThanTheirSource) {
  EvalSet set;
  set.prediction_files = {"p.jsonl"};
  set.matched_by = "line";
  set.ids = {"1", "2", "3", "4", "5"};
  set.sources = {"how do i learn german", "why is the sky blue", "what is ai", "p q r", "x y"};
  set.references = {{"how can i learn german"}, {"why is the sky blue"}, {"what is ai"}, {"p q s"}, {"x z"}};
  // The sources' token F1 (SQuAD: lower case, no punctuation or articles): 4 of 5 words -> 0.8, 1, 1,
  // 2 of 3 -> 2/3, 1 of 2 -> 0.5.
  // 1: the reference itself, F1 1 > 0.8: better. 2: "why is sea blue" against "why is sky blue",
  // 0.75 < 1: worse. 3: the source up to spacing: copied, neither. 4: P 3/4, R 1 -> 6/7 > 2/3: better.
  // 5: 0.5 = 0.5: neither.
  set.predictions = {{"how can i learn german", "why is the sea blue", " what  is ai ", "p q s t", "x q"}};
  EvalOptions options;
  options.metrics = {"rewrite-better", "rewrite-worse", "copied"};
  options.per_example = true;
  const EvalReport report = evaluate(set, options);
  EXPECT_DOUBLE_EQ(report.systems[0].metrics[0].value, 40.0);  // 2 of 5
  EXPECT_DOUBLE_EQ(report.systems[0].metrics[1].value, 20.0);  // 1 of 5
  EXPECT_DOUBLE_EQ(report.systems[0].metrics[2].value, 20.0);
  const std::vector<double> better = {100, 0, 0, 100, 0}, worse = {0, 100, 0, 0, 0};
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(report.systems[0].per_example[i]["scores"]["rewrite-better"], better[i]) << i;
    EXPECT_EQ(report.systems[0].per_example[i]["scores"]["rewrite-worse"], worse[i]) << i;
  }
  EXPECT_TRUE(needs_references({"rewrite-better"}));
  set.sources[2] = " ";
  EXPECT_EQ(error_of([&] { evaluate(set, options); }),
            "eval: p.jsonl: metric \"rewrite-better\" needs each item's source (\"src\"), but item 3 (id \"3\") has none");
}

TEST(EvalReport, SeveralFilesGiveDiversityAndMbr) {
  EvalSet set;
  set.prediction_files = {"a.jsonl", "b.jsonl", "c.jsonl"};
  set.matched_by = "id";
  set.ids = {"1"};
  set.sources = {"s"};
  set.references = {{"a b c d"}};
  // Two identical samples and an odd one: selectBest picks the first of the identical pair.
  set.predictions = {{"x y z w"}, {"a b c d"}, {"a b c d"}};
  EvalOptions options;
  options.metrics = {"diffuseq-bleu", "dist1"};
  const EvalReport report = evaluate(set, options);
  ASSERT_EQ(report.systems.size(), 4u);
  EXPECT_EQ(report.systems[3].name, "MBR");
  EXPECT_EQ(report.systems[3].predictions, Strings{"a b c d"});
  EXPECT_NEAR(report.systems[3].metrics[0].value, 1.0, 1e-12);
  ASSERT_EQ(report.diversity.size(), 4u);
  EXPECT_EQ(report.diversity[0].name, "self-bleu");
  // Pairs (x, a), (x, a), (a, a): get_bleu 0, 0, 1 -> mean 1/3.
  EXPECT_NEAR(report.diversity[0].value, 1.0 / 3.0, 1e-12);
  // 4-grams: "x y z w", "a b c d" twice -> 2 unique of 3.
  EXPECT_NEAR(report.diversity[1].value, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(report.json["mbr"]["picks_per_file"], (std::vector<int>{0, 1, 0}));
  EXPECT_NE(report.table().find("MBR pick among 3 samples"), std::string::npos);
}

}  // namespace
}  // namespace mds::metrics
