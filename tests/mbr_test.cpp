// NLTK sentence BLEU (method4), DiffuSeq's MBR pick and ROUGE-L: hand-computed values and the values
// the Python libraries produced for the conformance vectors (test::metric_vectors_path()).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "metrics/mbr.h"
#include "metrics/nltk_bleu.h"
#include "test_util.h"

namespace mds {
namespace {

using Tokens = std::vector<std::string>;

Tokens split(const std::string& s) { return split_python_whitespace(s); }

TEST(NltkBleu, PythonSplit) {
  EXPECT_EQ(split("  a\tb\n\nc \x1f d\r\n"), (Tokens{"a", "b", "c", "d"}));
  EXPECT_TRUE(split("").empty());
  EXPECT_TRUE(split(" \t ").empty());
  // NBSP (U+00A0), U+3000 and U+2009 split; the zero-width space U+200B does not.
  EXPECT_EQ(split("a\xc2\xa0"
                  "b\xe3\x80\x80"
                  "c\xe2\x80\x89"
                  "d\xe2\x80\x8b"
                  "e"),
            (Tokens{"a", "b", "c",
                    "d\xe2\x80\x8b"
                    "e"}));
}

TEST(NltkBleu, HandValues) {
  // Identical: every p_n = 1, BP = 1 -> 1.
  EXPECT_EQ(diffuseq_bleu("the cat sat on the mat", "the cat sat on the mat"), 1.0);

  // hyp "the cat sat on mat" (5), ref "the cat sat on the mat" (6):
  //   p1 = 5/5; p2: the cat, cat sat, sat on match, "on mat" not -> 3/4;
  //   p3: the cat sat, cat sat on match, "sat on mat" not -> 2/3; p4: "the cat sat on" -> 1/2;
  //   BP = exp(1 - 6/5) = exp(-0.2); BLEU = exp(-0.2) (1 * 3/4 * 2/3 * 1/2)^(1/4)
  //   = exp(-0.2) * 0.25^0.25 = 0.8187307531 * 0.7071067812 = 0.5789300675.
  EXPECT_NEAR(diffuseq_bleu("the cat sat on mat", "the cat sat on the mat"),
              std::exp(-0.2) * std::pow(0.25, 0.25), 1e-15);
  EXPECT_NEAR(diffuseq_bleu("the cat sat on mat", "the cat sat on the mat"), 0.5789300674674098,
              1e-15);

  // Smoothing. hyp "the dog ran" (3), ref "the cat ran" (3):
  //   p1 = 2/3; p2 = 0/2, p3 = 0/1, p4 = 0/1 (denominator max(1, 0) = 1).
  //   method4 with ln 3: p2 = (1 / (2 * 5 / ln 3)) / 2 = ln3 / 20,
  //   p3 = (1 / (4 * 5 / ln 3)) / 1 = ln3 / 20, p4 = (1 / (8 * 5 / ln 3)) / 1 = ln3 / 40;
  //   BP = exp(1 - 3/3) = 1.
  //   BLEU = (2/3 * (ln3)^3 / 16000)^(1/4) = 0.0862145427.
  const double ln3 = std::log(3.0);
  EXPECT_NEAR(diffuseq_bleu("the dog ran", "the cat ran"),
              std::pow(2.0 / 3.0 * ln3 * ln3 * ln3 / 16000.0, 0.25), 1e-15);

  // One-token hypothesis: not smoothed; the zero p_n are left out of the sum.
  //   hyp "cat", ref "the cat": p1 = 1, BP = exp(1 - 2/1) = 1/e -> 0.3678794412.
  EXPECT_DOUBLE_EQ(diffuseq_bleu("cat", "the cat"), std::exp(-1.0));

  // No matching unigram, or an empty hypothesis: 0.
  EXPECT_EQ(diffuseq_bleu("dogs bark", "the cat sat"), 0.0);
  EXPECT_EQ(diffuseq_bleu("", "the cat sat"), 0.0);
  EXPECT_EQ(diffuseq_bleu("   ", ""), 0.0);

  // Clipping by the max count over references and the closest reference length (tie -> shorter).
  //   hyp "the the the the" (4); refs "the cat" (2), "the the cat on mat ok" (6): |2-4| = |6-4|,
  //   so r = 2 < 4 and BP = 1. p1: "the" x4 clipped to 2 (second ref) -> 2/4; p2: "the the" x3,
  //   clipped to 1 -> 1/3; p3 = 0/2 -> (ln4 / 10) / 2 = ln4 / 20; p4 = 0/1 -> (ln4 / 20) / 1.
  //   BLEU = (1/2 * 1/3 * (ln4/20)^2)^(1/4) = (1/6)^(1/4) sqrt(ln4 / 20) = 0.1682189500.
  const double ln4 = std::log(4.0);
  EXPECT_NEAR(nltk_sentence_bleu_method4({split("the cat"), split("the the cat on mat ok")},
                                         split("the the the the")),
              std::pow(1.0 / 6.0, 0.25) * std::sqrt(ln4 / 20.0), 1e-15);
  EXPECT_THROW(nltk_sentence_bleu_method4({}, split("a")), Error);
}

TEST(NltkBleu, Fsum) {
  EXPECT_EQ(python_fsum({}), 0.0);
  EXPECT_EQ(python_fsum({1e100, 1.0, -1e100}), 1.0);  // naive summation gives 0
  EXPECT_EQ(python_fsum({0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}), 1.0);
}

TEST(Mbr, PicksTheConsensus) {
  // Row sums of BLEU(c_i, c_j), j != i (values from the same formulas as above):
  //   c0 "the cat sat"                  0.3636  (short: BP e^-1 against c1, e^(1-7/3) against c2)
  //   c1 "the cat sat on the mat"       1.0802  <- the pick
  //   c2 "the cat sat on the mat today" 1.0022
  //   c3 "dogs run"                     0       (no unigram in common)
  EXPECT_EQ(mbr_select({"the cat sat", "the cat sat on the mat", "the cat sat on the mat today",
                        "dogs run"},
                       "bleu"),
            1u);
  // Two identical best candidates: the first wins the tie.
  EXPECT_EQ(mbr_select({"a dog ran far away", "the cat sat on the mat", "a cat sat on a mat",
                        "the cat sat on the mat"},
                       "bleu"),
            1u);
  EXPECT_EQ(mbr_select({"only one"}, "bleu"), 0u);
  EXPECT_THROW(mbr_select({}, "bleu"), Error);
  EXPECT_THROW(mbr_select({"a"}, "meteor"), Error);
}

TEST(Mbr, RougeL) {
  // Tokens: lowercase [a-z0-9]+ runs. "The cat sat." -> [the cat sat]; "A cat, sat on the mat!" ->
  // [a cat sat on the mat].
  //   F(c0, c1): LCS 3, P = 3/3, R = 3/6 -> 2 * 1 * 0.5 / 1.5 = 2/3
  //   F(c0, c2): LCS 2 (cat sat), P = 2/3, R = 2/6 -> 4/9
  //   F(c1, c2): LCS 5 (cat sat on the mat), P = R = 5/6 -> 5/6
  //   sums: c0 2/3 + 4/9 = 1.111, c1 2/3 + 5/6 = 1.5 <- pick, c2 4/9 + 5/6 = 1.278, c3 0.
  EXPECT_DOUBLE_EQ(rouge_l_fmeasure("The cat sat.", "the cat sat on the mat"), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(rouge_l_fmeasure("The cat sat.", "A cat, sat on the mat!"), 4.0 / 9.0);
  EXPECT_DOUBLE_EQ(rouge_l_fmeasure("the cat sat on the mat", "A cat, sat on the mat!"), 5.0 / 6.0);
  EXPECT_EQ(rouge_l_fmeasure("...", "the cat"), 0.0);
  EXPECT_EQ(
      mbr_select({"The cat sat.", "the cat sat on the mat", "A cat, sat on the mat!", "dogs run"},
                 "rouge-l"),
      1u);
}

TEST(Mbr, TheSourceWinsUnlessTheSamplesAgreeOnAChange) {
  // ROUGE-L over 6-token texts. Damage at three different places: every pair of samples shares 4 of
  // 6 tokens (F 4/6), the source shares 5 with each (F 5/6), so the source's mean 5/6 beats 4/6.
  const std::string source = "how do i learn to cook";
  EXPECT_EQ(mbr_select_or_source({"how do i learn to book", "how can i learn to cook", "what do i learn to cook"},
                                 "rouge-l", source),
            3u);
  // Two samples agree on "can": c0 and c1 score (1 + 5/6) / 2 = 11/12 each, c2 (5/6 + 5/6) / 2; the
  // source (5/6 + 5/6 + 4/6) / 3 = 7/9 < 11/12: the first of the agreeing samples.
  const std::vector<std::string> agree = {"how can i learn to cook", "how can i learn to cook", "how can i learn to book"};
  EXPECT_EQ(mbr_select_or_source(agree, "rouge-l", source), 0u);
  EXPECT_EQ(mbr_select(agree, "rouge-l"), 0u);
  // A tie goes to the sample (the same text, when every sample is the source).
  EXPECT_EQ(mbr_select_or_source({source, source}, "bleu", source), 0u);
  // BLEU: the damaged samples lose to the source as well.
  EXPECT_EQ(mbr_select_or_source({"how do i learn to book today", "how can i learn to cook today",
                                  "what do i learn to cook today"},
                                 "bleu", "how do i learn to cook today"),
            3u);
  EXPECT_THROW(mbr_select_or_source({"one"}, "bleu", source), Error);
  EXPECT_THROW(mbr_select_or_source({"a", "b"}, "meteor", source), Error);
}

// ---- conformance vectors (shared/metrics/README.md) -------------------------------------------


bool is_ascii(const std::string& s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

struct Vectors {
  std::vector<nlohmann::json> items;
};

const Vectors& vectors() {
  static const Vectors v = [] {
    Vectors out;
    for (const std::string& line : test::read_lines(test::metric_vectors_path()))
      out.items.push_back(nlohmann::json::parse(line));
    return out;
  }();
  return v;
}

bool all_ascii(const nlohmann::json& item) {
  for (const auto& h : item["hyps"]) {
    if (!is_ascii(h.get<std::string>())) return false;
  }
  for (const auto& refs : item["refs"]) {
    for (const auto& r : refs) {
      if (!is_ascii(r.get<std::string>())) return false;
    }
  }
  return true;
}

// Checks the sentence items (ascii_only: the ASCII ones, else the others); returns how many.
int check_sentence_vectors(bool ascii_only) {
  int checked = 0;
  for (const auto& item : vectors().items) {
    if (item["settings"]["level"] != "sentence" || all_ascii(item) != ascii_only) continue;
    const std::string id = item["id"];
    const std::string hyp = item["hyps"][0];
    std::vector<Tokens> refs;
    for (const auto& r : item["refs"][0]) refs.push_back(split(r.get<std::string>()));
    const nlohmann::json& expected = item["expected"];
    EXPECT_NEAR(nltk_sentence_bleu_method4(refs, split(hyp)),
                expected["nltk_bleu_method4"].get<double>(), 1e-12)
        << id;
    EXPECT_NEAR(diffuseq_bleu(hyp, item["refs"][0][0].get<std::string>()),
                expected["diffuseq"]["bleu"].get<double>(), 1e-12)
        << id;
    ++checked;
  }
  return checked;
}

int check_mbr_vectors(bool ascii_only) {
  int checked = 0;
  for (const auto& item : vectors().items) {
    if (item["settings"]["level"] != "corpus" || all_ascii(item) != ascii_only) continue;
    if (!item["expected"].contains("diffuseq") ||
        !item["expected"]["diffuseq"].contains("mbr_selected")) {
      continue;
    }
    std::vector<std::string> hyps;
    for (const auto& h : item["hyps"]) hyps.push_back(h.get<std::string>());
    const std::size_t pick = mbr_select(hyps, "bleu");
    EXPECT_EQ(hyps[pick], item["expected"]["diffuseq"]["mbr_selected"].get<std::string>())
        << item["id"];
    ++checked;
  }
  return checked;
}

TEST(MetricVectors, NltkBleuAscii) {
  const int n = check_sentence_vectors(true);
  EXPECT_GT(n, 0);
  std::cout << "checked " << n << " ASCII sentence vectors\n";
}

TEST(MetricVectors, MbrSelectedAscii) {
  const int n = check_mbr_vectors(true);
  EXPECT_GT(n, 0);
  std::cout << "checked " << n << " ASCII MBR groups\n";
}

// The same on the non-ASCII vectors (Unicode whitespace for str.split()).
TEST(MetricVectors, NltkBleuAndMbrNonAscii) {
  const int n = check_sentence_vectors(false), g = check_mbr_vectors(false);
  std::cout << "checked " << n << " non-ASCII sentence vectors and " << g << " groups\n";
}

}  // namespace
}  // namespace mds
