// Checks every metric against the conformance vectors (test::metric_vectors_path(): the shared
// directory's vectors.jsonl, else the copy under tests/fixtures): values computed by the original
// Python libraries (sacreBLEU 2.6.0, NLTK 3.8.1, rouge-score 0.1.2, torchmetrics 1.9.0, SQuAD v1.1,
// DiffuSeq's eval_seq2seq.py). Tolerances are the README's: exact for counts, lengths and booleans,
// 1e-9 on 0-100 scales, 1e-12 on 0-1 scales, 1e-6 for torchmetrics corpus means (float32, torch's
// summation order).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/fs.h"
#include "metrics/chrf.h"
#include "metrics/diversity.h"
#include "metrics/mbr.h"
#include "metrics/nltk_bleu.h"
#include "metrics/nltk_corpus_bleu.h"
#include "metrics/pysum.h"
#include "metrics/rouge_score.h"
#include "metrics/sacrebleu_bleu.h"
#include "metrics/squad.h"
#include "metrics/text.h"
#include "metrics/torchmetrics_rouge.h"
#include "test_util.h"

namespace mds::metrics {
namespace {

using json = nlohmann::json;

constexpr double kTol100 = 1e-9;    // 0-100 scales
constexpr double kTol1 = 1e-12;     // 0-1 scales
constexpr double kTolTorch = 1e-6;  // torchmetrics corpus means


std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// Collects the failures of one vector, per metric family.
class Checker {
 public:
  explicit Checker(std::string id) : id_(std::move(id)) {}

  void near(const std::string& family, const std::string& field, const json& expected,
            double actual, double tol) {
    fields_[family] += 1;
    const double e = expected.get<double>();
    if (e == actual) bit_exact_[family] += 1;
    const bool ok = std::fabs(e - actual) <= tol && !std::isnan(actual);
    if (!ok) fail(family, field + ": expected " + fmt(e) + ", got " + fmt(actual));
  }
  // Tiny values (NLTK's sys.float_info.min path) are also checked relatively.
  void near_rel(const std::string& family, const std::string& field, const json& expected,
                double actual, double tol) {
    near(family, field, expected, actual, tol);
    const double e = expected.get<double>();
    if (e != 0.0 && std::fabs(e - actual) > 1e-12 * std::fabs(e))
      fail(family, field + " (relative): expected " + fmt(e) + ", got " + fmt(actual));
  }
  void exact(const std::string& family, const std::string& field, const json& expected,
             const json& actual) {
    fields_[family] += 1;
    if (expected == actual) bit_exact_[family] += 1;
    if (expected != actual)
      fail(family, field + ": expected " + expected.dump() + ", got " + actual.dump());
  }

  const std::map<std::string, std::vector<std::string>>& failures() const { return failures_; }
  const std::map<std::string, int>& fields() const { return fields_; }
  const std::map<std::string, int>& bit_exact() const { return bit_exact_; }
  const std::string& id() const { return id_; }

 private:
  void fail(const std::string& family, const std::string& what) {
    failures_[family].push_back(id_ + " " + family + "." + what);
  }
  std::string id_;
  std::map<std::string, std::vector<std::string>> failures_;
  std::map<std::string, int> fields_;
  std::map<std::string, int> bit_exact_;  // equal to the last bit
};

std::vector<std::string> strings(const json& j) { return j.get<std::vector<std::string>>(); }

void check_bleu(Checker& c, const json& e, const BleuScore& s) {
  c.near("sacrebleu_bleu", "score", e["score"], s.score, kTol100);
  c.exact("sacrebleu_bleu", "counts", e["counts"], json(s.counts));
  c.exact("sacrebleu_bleu", "totals", e["totals"], json(s.totals));
  for (int n = 0; n < 4; ++n)
    c.near("sacrebleu_bleu", "precisions[" + std::to_string(n) + "]", e["precisions"][n],
           s.precisions[n], kTol100);
  c.near("sacrebleu_bleu", "bp", e["bp"], s.bp, kTol1);
  c.exact("sacrebleu_bleu", "sys_len", e["sys_len"], json(s.sys_len));
  c.exact("sacrebleu_bleu", "ref_len", e["ref_len"], json(s.ref_len));
}

void check_rouge_value(Checker& c, const std::string& field, const json& e, const RougeValue& v) {
  c.near("rouge_score", field + ".precision", e["precision"], v.precision, kTol1);
  c.near("rouge_score", field + ".recall", e["recall"], v.recall, kTol1);
  c.near("rouge_score", field + ".fmeasure", e["fmeasure"], v.fmeasure, kTol1);
}

const RougeValue& rouge_field(const RougeScores& s, const std::string& type) {
  if (type == "rouge1") return s.rouge1;
  if (type == "rouge2") return s.rouge2;
  if (type == "rougeL") return s.rougeL;
  return s.rougeLsum;
}

void check_torchmetrics(Checker& c, const json& e, const TorchmetricsRouge& t, double tol) {
  c.near("torchmetrics_rouge", "rouge1_fmeasure", e["rouge1_fmeasure"], t.rouge1_fmeasure, tol);
  c.near("torchmetrics_rouge", "rouge2_fmeasure", e["rouge2_fmeasure"], t.rouge2_fmeasure, tol);
  c.near("torchmetrics_rouge", "rougeL_fmeasure", e["rougeL_fmeasure"], t.rougeL_fmeasure, tol);
  c.near("torchmetrics_rouge", "rougeL_precision", e["rougeL_precision"], t.rougeL_precision, tol);
  c.near("torchmetrics_rouge", "rougeL_recall", e["rougeL_recall"], t.rougeL_recall, tol);
}

void check_sentence(Checker& c, const json& v) {
  const std::string h = v["hyps"][0].get<std::string>();
  const std::vector<std::string> refs = strings(v["refs"][0]);
  const json& e = v["expected"];

  check_bleu(c, e["sacrebleu_bleu"], sacrebleu_sentence_bleu(h, refs));
  c.near("sacrebleu_chrf", "score", e["sacrebleu_chrf"]["score"], sacrebleu_sentence_chrf(h, refs),
         kTol100);

  std::vector<std::vector<std::string>> ref_tokens;
  for (const auto& r : refs) ref_tokens.push_back(python_split(r));
  c.near("nltk", "nltk_bleu_method4", e["nltk_bleu_method4"],
         mds::nltk_sentence_bleu_method4(ref_tokens, python_split(h)), kTol1);

  for (const char* mode : {"stemmer", "no_stemmer"}) {
    const RougeScores s = rouge_score_multi(refs, h, std::string(mode) == "stemmer");
    for (const char* type : {"rouge1", "rouge2", "rougeL", "rougeLsum"})
      check_rouge_value(c, std::string(mode) + "." + type, e["rouge_score"][mode][type],
                        rouge_field(s, type));
  }

  check_torchmetrics(c, e["torchmetrics_rouge"], torchmetrics_rouge(h, refs), kTol1);

  c.exact("squad", "exact_match", e["squad"]["exact_match"], json(squad_exact_match(h, refs)));
  c.near("squad", "f1", e["squad"]["f1"], squad_f1(h, refs), kTol1);

  const json& d = e["diffuseq"];
  c.near("diffuseq", "bleu", d["bleu"], mds::diffuseq_bleu(h, refs[0]), kTol1);
  c.near("diffuseq", "rougeL", d["rougeL"], torchmetrics_rouge(h, {refs[0]}).rougeL_fmeasure,
         kTol1);
  c.near("diffuseq", "dist1", d["dist1"], distinct_n_gram({h}, 1), kTol1);
  c.near("diffuseq", "dist2", d["dist2"], distinct_n_gram({h}, 2), kTol1);
  c.exact("diffuseq", "len", d["len"], json(diffuseq_length(h)));
}

void check_corpus(Checker& c, const json& v) {
  const std::vector<std::string> hyps = strings(v["hyps"]);
  std::vector<std::vector<std::string>> refs;
  for (const auto& r : v["refs"]) refs.push_back(strings(r));
  const json& e = v["expected"];
  const std::size_t n = hyps.size();

  check_bleu(c, e["sacrebleu_bleu"], sacrebleu_corpus_bleu(hyps, refs));
  c.near("sacrebleu_chrf", "score", e["sacrebleu_chrf"]["score"], sacrebleu_corpus_chrf(hyps, refs),
         kTol100);
  c.near_rel("nltk", "nltk_corpus_bleu", e["nltk_corpus_bleu"],
             nltk_corpus_bleu(refs, hyps, NltkSmoothing::none), kTol1);
  c.near_rel("nltk", "nltk_corpus_bleu_method4", e["nltk_corpus_bleu_method4"],
             nltk_corpus_bleu(refs, hyps, NltkSmoothing::method4), kTol1);

  for (const char* mode : {"stemmer", "no_stemmer"}) {
    std::vector<RougeScores> items;
    for (std::size_t i = 0; i < n; ++i)
      items.push_back(rouge_score_multi(refs[i], hyps[i], std::string(mode) == "stemmer"));
    for (const char* type : {"rouge1", "rouge2", "rougeL", "rougeLsum"}) {
      const json& et = e["rouge_score"][mode][type];
      const std::string field = std::string(mode) + "." + type;
      std::vector<double> p, r, f;
      for (std::size_t i = 0; i < n; ++i) {
        const RougeValue& rv = rouge_field(items[i], type);
        p.push_back(rv.precision);
        r.push_back(rv.recall);
        f.push_back(rv.fmeasure);
        c.near("rouge_score", field + ".fmeasure_per_item[" + std::to_string(i) + "]",
               et["fmeasure_per_item"][i], rv.fmeasure, kTol1);
      }
      c.near("rouge_score", field + ".mean_precision", et["mean_precision"], numpy_mean(p), kTol1);
      c.near("rouge_score", field + ".mean_recall", et["mean_recall"], numpy_mean(r), kTol1);
      c.near("rouge_score", field + ".mean_fmeasure", et["mean_fmeasure"], numpy_mean(f), kTol1);
    }
  }

  check_torchmetrics(c, e["torchmetrics_rouge"], torchmetrics_rouge_corpus(hyps, refs), kTolTorch);

  const SquadCorpus squad = squad_evaluate(hyps, refs);
  c.near("squad", "exact_match", e["squad"]["exact_match"], squad.exact_match, kTol100);
  c.near("squad", "f1", e["squad"]["f1"], squad.f1, kTol100);

  const json& d = e["diffuseq"];
  std::vector<double> bleu, rouge_l, dist1, len;
  for (std::size_t i = 0; i < n; ++i) {
    bleu.push_back(mds::diffuseq_bleu(hyps[i], refs[i][0]));
    const float rl = torchmetrics_rouge(hyps[i], {refs[i][0]}).rougeL_fmeasure;
    rouge_l.push_back(rl);
    c.near("diffuseq", "rougeL_per_item[" + std::to_string(i) + "]", d["rougeL_per_item"][i], rl,
           kTol1);
    dist1.push_back(distinct_n_gram({hyps[i]}, 1));
    len.push_back(static_cast<double>(diffuseq_length(hyps[i])));
  }
  c.near("diffuseq", "avg_bleu", d["avg_bleu"], numpy_mean(bleu), kTol1);
  c.near("diffuseq", "avg_rougeL", d["avg_rougeL"], numpy_mean(rouge_l), kTol1);
  c.near("diffuseq", "avg_dist1", d["avg_dist1"], numpy_mean(dist1), kTol1);
  c.exact("diffuseq", "avg_len", d["avg_len"], json(numpy_mean(len)));
  c.near("diffuseq", "distinct_1", d["distinct_1"], distinct_n_gram(hyps, 1), kTol1);
  c.near("diffuseq", "distinct_2", d["distinct_2"], distinct_n_gram(hyps, 2), kTol1);
  for (std::size_t k : {1, 2, 4})
    c.near("diffuseq", "inter_distinct_" + std::to_string(k),
           d["inter_distinct_" + std::to_string(k)], distinct_n_gram_inter_sent(hyps, k), kTol1);
  const SetDiversity div = diversity_of_set(hyps);
  c.near("diffuseq", "self_bleu", d["self_bleu"], div.self_bleu, kTol1);
  c.near("diffuseq", "div4", d["div4"], div.div4, kTol1);
  c.exact("diffuseq", "mbr_selected", d["mbr_selected"], json(hyps[mds::mbr_select(hyps, "bleu")]));
}

TEST(MetricsVectors, AllSharedVectorsMatch) {
  const std::string path = test::metric_vectors_path();
  const std::vector<std::string> lines = test::read_lines(path);

  std::map<std::string, int> vectors_per_family, passed_per_family, fields_per_family,
      exact_per_family;
  std::vector<std::string> failures;
  int vectors = 0, passed = 0;
  for (const std::string& line : lines) {
    const json v = json::parse(line);
    Checker c(v["id"].get<std::string>());
    try {
      if (v["settings"]["level"] == "sentence")
        check_sentence(c, v);
      else
        check_corpus(c, v);
    } catch (const std::exception& ex) {
      failures.push_back(c.id() + ": threw " + ex.what());
    }
    ++vectors;
    bool all_ok = true;
    for (const auto& [family, count] : c.fields()) {
      ++vectors_per_family[family];
      fields_per_family[family] += count;
      auto bit = c.bit_exact().find(family);
      exact_per_family[family] += bit == c.bit_exact().end() ? 0 : bit->second;
      auto it = c.failures().find(family);
      if (it == c.failures().end()) {
        ++passed_per_family[family];
      } else {
        all_ok = false;
        failures.insert(failures.end(), it->second.begin(), it->second.end());
      }
    }
    passed += all_ok ? 1 : 0;
  }
  for (const auto& [family, count] : vectors_per_family)
    std::printf("  %-20s %4d / %4d vectors pass (%d fields, %d equal to the last bit)\n",
                family.c_str(), passed_per_family[family], count, fields_per_family[family],
                exact_per_family[family]);
  std::printf("  %d / %d vectors pass in every field\n", passed, vectors);
  // Any file of this schema works (the shared one has 306 vectors; an acceptance set may differ).
  EXPECT_GT(vectors, 0) << path << " holds no vector";
  for (std::size_t i = 0; i < failures.size() && i < 200; ++i) ADD_FAILURE() << failures[i];
  EXPECT_TRUE(failures.empty()) << failures.size() << " field mismatches";
}

// The copy a clean clone checks is the shared file, line for line (refresh it with
// zstd -19 ../shared/metrics/vectors.jsonl -o tests/fixtures/metric-vectors.jsonl.zst).
TEST(MetricsVectors, CommittedCopyIsTheSharedFile) {
  const std::string shared = test::source_path("../shared/metrics/vectors.jsonl");
  if (!fs::exists(shared)) GTEST_SKIP() << shared << " is absent: nothing to compare the copy with";
  EXPECT_EQ(test::read_lines(test::source_path("tests/fixtures/metric-vectors.jsonl.zst")),
            test::read_lines(shared));
}

}  // namespace
}  // namespace mds::metrics
