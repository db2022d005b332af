// Small hand-computed cases for every metric: empty strings, one-word sentences, Unicode and
// several references. The arithmetic is in the comments; the shared vectors
// (metrics_vectors_test.cpp) check the same code against the Python libraries themselves.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

#include "metrics/chrf.h"
#include "metrics/diversity.h"
#include "metrics/nltk_bleu.h"
#include "metrics/nltk_corpus_bleu.h"
#include "metrics/porter_stemmer.h"
#include "metrics/pysum.h"
#include "metrics/rouge_score.h"
#include "metrics/sacrebleu_bleu.h"
#include "metrics/sacrebleu_tokenizer.h"
#include "metrics/squad.h"
#include "metrics/text.h"
#include "metrics/torchmetrics_rouge.h"

namespace mds::metrics {

namespace {

using Strings = std::vector<std::string>;

// ------------------------------------------------------------------------------------ text

TEST(MetricsText, PythonSplitUsesUnicodeWhitespaceButNotZeroWidthSpace) {
  // U+00A0 and U+3000 separate; U+200B is not whitespace for Python.
  EXPECT_EQ(python_split("a\xC2\xA0"
                         "b\xE3\x80\x80"
                         "c\xE2\x80\x8B"
                         "d"),
            (Strings{"a", "b",
                     "c\xE2\x80\x8B"
                     "d"}));
  EXPECT_EQ(python_split(" \t\r\n "), Strings{});
  EXPECT_EQ(python_split_space_count(""), 1u);      // "".split(' ') == ['']
  EXPECT_EQ(python_split_space_count("a  b"), 3u);  // ['a', '', 'b']
  EXPECT_EQ(python_split_space_count("a\tb"), 1u);  // only U+0020 splits
}

TEST(MetricsText, PythonLowerSpecialCases) {
  // U+0130 lowers to "i" + U+0307; the Kelvin sign to ASCII 'k'.
  EXPECT_EQ(u32_to_utf8(python_lower(U"\u0130K\u212A")), u32_to_utf8(U"i\u0307kk"));
  // Final sigma: at the end of a word it becomes U+03C2, alone or inside a word U+03C3.
  EXPECT_EQ(python_lower(U"\u039F\u0394\u039F\u03A3"), U"\u03BF\u03B4\u03BF\u03C2");
  EXPECT_EQ(python_lower(U"\u03A3"), U"\u03C3");
  EXPECT_EQ(python_lower(U"\u03A3\u039F"), U"\u03C3\u03BF");
  // Case-ignorable characters are skipped when looking for the neighbouring letters.
  EXPECT_EQ(python_lower(U"A\u03A3'"), U"a\u03C2'");
  EXPECT_TRUE(is_python_alnum(U'\u00E9'));
  EXPECT_TRUE(is_python_alnum(U'\u00BD'));   // VULGAR FRACTION ONE HALF is numeric
  EXPECT_FALSE(is_python_alnum(U'\u0301'));  // a combining accent is not
  EXPECT_FALSE(is_python_alnum(U'_'));
}

// ------------------------------------------------------------------------------------ numpy /
// torch sums

TEST(MetricsSums, NumpyPairwiseOrderDiffersFromALoop) {
  // Nine values: r0..r7 = a0..a7, res = ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then + a8.
  // (1e16+1) rounds to 1e16, (1+1) = 2, so the first half is 1e16+2; the second half is -1e16;
  // 2 + a8 = 3. A left-to-right loop loses every 1 against 1e16 and gives 1.
  const std::vector<double> a = {1e16, 1, 1, 1, -1e16, 0, 0, 0, 1};
  EXPECT_EQ(numpy_sum(a), 3.0);
  double loop = 0;
  for (double x : a) loop += x;
  EXPECT_EQ(loop, 1.0);
  EXPECT_DOUBLE_EQ(numpy_mean(a), 3.0 / 9.0);
  // Above 128 values the split recursion runs: 1..300 sums exactly to 45150.
  std::vector<double> many;
  for (int i = 1; i <= 300; ++i) many.push_back(i);
  EXPECT_EQ(numpy_mean(many), 150.5);
  EXPECT_TRUE(std::isnan(numpy_mean({})));
}

TEST(MetricsSums, TorchFloatSum) {
  // Three values take the scalar path: ((0 + 0.1f) + 0.2f) + 0.3f in float, then / 3 in float.
  const float small = ((0.1f + 0.2f) + 0.3f) / 3.0f;
  EXPECT_EQ(torch_cpu_mean({0.1f, 0.2f, 0.3f}), small);
  // Nine values: one 8-lane vector plus one leftover; nothing is dropped: 45 / 9 = 5.
  EXPECT_EQ(torch_cpu_mean({1, 2, 3, 4, 5, 6, 7, 8, 9}), 5.0f);
}

TEST(MetricsSums, PythonFsumIsCorrectlyRounded) {
  // Ten times 0.1: a loop gives 0.9999999999999999, math.fsum gives 1.0.
  EXPECT_EQ(mds::python_fsum(std::vector<double>(10, 0.1)), 1.0);
}

// ------------------------------------------------------------------------------------ 13a
// tokenizer

TEST(Tokenizer13a, PunctuationNumbersAndEntities) {
  // "," and "!" are split off; "'" never is.
  EXPECT_EQ(tokenize_13a("Hello, world! Don't"), (Strings{"Hello", ",", "world", "!", "Don't"}));
  // "." and "," stay inside numbers (a digit on both sides); "-" is split after a digit.
  EXPECT_EQ(tokenize_13a("3.14 and 1,000 in 2019-2020"),
            (Strings{"3.14", "and", "1,000", "in", "2019", "-", "2020"}));
  // A final period is split; "<skipped>" is removed; "&amp;" is decoded and then padded.
  EXPECT_EQ(tokenize_13a("end. &amp; <skipped>x"), (Strings{"end", ".", "&", "x"}));
  // "-\n" joins a word; other newlines become spaces; trailing Unicode whitespace is stripped.
  EXPECT_EQ(tokenize_13a("co-\noperate\nnow\xE3\x80\x80"), (Strings{"cooperate", "now"}));
  // Only ASCII digits count: after the full-width "１" the period is split.
  EXPECT_EQ(tokenize_13a("\xEF\xBC\x91."), (Strings{"\xEF\xBC\x91", "."}));
  EXPECT_EQ(tokenize_13a(""), Strings{});
}

// ------------------------------------------------------------------------------------ sacreBLEU

TEST(SacreBleu, IdentityIsOneHundred) {
  // 6 tokens: counts = totals = 6, 5, 4, 3; every precision 100; BP 1;
  // exp(4 ln 100 / 4) is 100.00000000000004 in floating point.
  const BleuScore s = sacrebleu_sentence_bleu("the cat sat on the mat", {"the cat sat on the mat"});
  EXPECT_EQ(s.counts, (std::array<int64_t, 4>{6, 5, 4, 3}));
  EXPECT_EQ(s.totals, (std::array<int64_t, 4>{6, 5, 4, 3}));
  EXPECT_NEAR(s.score, 100.0, 1e-9);
  EXPECT_EQ(s.bp, 1.0);
}

TEST(SacreBleu, EmptyHypothesis) {
  // No token: no match, so the early return gives 0; BP = 0 since sys_len = 0 < ref_len = 2.
  const BleuScore s = sacrebleu_sentence_bleu("", {"a b"});
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(s.bp, 0.0);
  EXPECT_EQ(s.sys_len, 0);
  EXPECT_EQ(s.ref_len, 2);
}

TEST(SacreBleu, OneWordUsesEffectiveOrder) {
  // "cat" vs "the cat": totals 1, 0, 0, 0, so the effective order is 1 and p1 = 100;
  // BP = exp(1 - 2/1) = e^-1; score = e^-1 * exp(ln 100 / 1) = 36.787944117144...
  const BleuScore s = sacrebleu_sentence_bleu("cat", {"the cat"});
  EXPECT_NEAR(s.score, 36.78794411714425, 1e-9);
  EXPECT_NEAR(s.bp, std::exp(-1.0), 1e-12);
}

TEST(SacreBleu, ExpSmoothing) {
  // "a b c d" vs "a b x d": p1 = 3/4 = 75; p2 = 1/3 ("a b"); p3 = 0 of 2 -> 100 / (2 * 2) = 25;
  // p4 = 0 of 1 -> 100 / (4 * 1) = 25. BLEU = (75 * 33.33 * 25 * 25)^(1/4) = 1562500^(1/4)
  // = 35.355...
  const BleuScore s = sacrebleu_sentence_bleu("a b c d", {"a b x d"});
  EXPECT_NEAR(s.precisions[0], 75.0, 1e-9);
  EXPECT_NEAR(s.precisions[2], 25.0, 1e-9);
  EXPECT_NEAR(s.precisions[3], 25.0, 1e-9);
  EXPECT_NEAR(s.score, 35.35533905932737, 1e-9);
}

TEST(SacreBleu, SeveralReferencesClipByTheBestOne) {
  // "the cat" vs {"a cat", "the dog"}: each unigram is found in one reference -> 2/2 = 100;
  // "the cat" is in neither -> 100 / (2 * 1) = 50; effective order 2: sqrt(100 * 50) = 70.71...
  const BleuScore s = sacrebleu_sentence_bleu("the cat", {"a cat", "the dog"});
  EXPECT_NEAR(s.score, 70.71067811865478, 1e-9);
  EXPECT_EQ(s.ref_len, 2);
}

TEST(SacreBleu, CorpusWithVariableReferenceCounts) {
  // Item 1: "the cat" vs {"the cat"}; item 2: "a dog" vs {"a dog", "the dog barks"} (closest
  // length 2). Counts = totals = 4, 2, 0, 0. No effective order at corpus level: p3 = p4 = 0 give
  // log -9999999999 and the score is 0.
  const BleuScore s =
      sacrebleu_corpus_bleu({"the cat", "a dog"}, {{"the cat"}, {"a dog", "the dog barks"}});
  EXPECT_EQ(s.counts, (std::array<int64_t, 4>{4, 2, 0, 0}));
  EXPECT_EQ(s.ref_len, 4);
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(sacrebleu_bleu_signature({{"x"}, {"y", "z"}}, false),
            "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
}

// ------------------------------------------------------------------------------------ chrF

TEST(Chrf, IdentityEmptyAndWhitespace) {
  // "abc": orders 1-3 have P = R = 1, orders 4-6 have no n-gram and are left out -> 100.
  EXPECT_NEAR(sacrebleu_sentence_chrf("abc", {"abc"}), 100.0, 1e-9);
  EXPECT_NEAR(sacrebleu_sentence_chrf("a b", {"ab"}), 100.0, 1e-9);  // whitespace removed
  EXPECT_EQ(sacrebleu_sentence_chrf("", {"abc"}), 0.0);
}

TEST(Chrf, PartialMatchAndCodePoints) {
  // "ab" vs "ac": order 1 P = R = 1/2, order 2 P = R = 0: averages 0.25;
  // F2 = 5 * 0.25 * 0.25 / (4 * 0.25 + 0.25) = 0.25 -> 25.
  EXPECT_NEAR(sacrebleu_sentence_chrf("ab", {"ac"}), 25.0, 1e-9);
  // "café" vs "cafe" count code points: orders 1-4 give 3/4, 2/3, 1/2, 0 -> mean 0.479166...
  // -> 47.92
  EXPECT_NEAR(sacrebleu_sentence_chrf("caf\xC3\xA9", {"cafe"}), 47.91666666666667, 1e-9);
  // Several references: the best one is kept.
  EXPECT_NEAR(sacrebleu_sentence_chrf("abc", {"xyz", "abc"}), 100.0, 1e-9);
}

// ------------------------------------------------------------------------------------ NLTK

TEST(NltkCorpusBleu, NoSmoothingUsesFloatMin) {
  // "the cat sat" vs itself: p1..p3 = 1, p4 = 0/max(1, 0) -> sys.float_info.min;
  // exp(0.25 ln(2.2250738585072014e-308)) = 1.2213386697554703e-77.
  const double v = nltk_corpus_bleu(std::vector<Strings>{{"the cat sat"}}, Strings{"the cat sat"},
                                    NltkSmoothing::none);
  EXPECT_NEAR(v / 1.2213386697554703e-77, 1.0, 1e-12);
}

TEST(NltkCorpusBleu, Method4) {
  // Same, method4: p4 = 1 / (2^1 * 5 / ln 3) / 1 = ln 3 / 10; BLEU = (ln 3 / 10)^(1/4) = 0.5757...
  EXPECT_NEAR(nltk_corpus_bleu(std::vector<Strings>{{"the cat sat"}}, Strings{"the cat sat"},
                               NltkSmoothing::method4),
              0.5757197301274735, 1e-12);
  // One token: method4 does not smooth (hyp_len = 1), the zero precisions are left out -> 1.
  EXPECT_NEAR(
      nltk_corpus_bleu(std::vector<Strings>{{"cat"}}, Strings{"cat"}, NltkSmoothing::method4), 1.0,
      1e-12);
  // No unigram match at all -> 0; an empty hypothesis too.
  EXPECT_EQ(nltk_corpus_bleu(std::vector<Strings>{{"a"}}, Strings{"b"}, NltkSmoothing::method4),
            0.0);
  EXPECT_EQ(nltk_corpus_bleu(std::vector<Strings>{{"a"}}, Strings{""}, NltkSmoothing::none), 0.0);
}

// ------------------------------------------------------------------------------------ Porter
// stemmer

TEST(PorterStemmer, NltkExtensions) {
  // NLTK's stem howto: caresses flies dies mules denied died agreed owned humbled sized meeting
  // stating siezing itemization sensational traditional reference colonizer plotted.
  const Strings words = {"caresses",    "flies",     "dies",      "mules",       "denied",
                         "died",        "agreed",    "owned",     "humbled",     "sized",
                         "meeting",     "stating",   "siezing",   "itemization", "sensational",
                         "traditional", "reference", "colonizer", "plotted"};
  const Strings stems = {"caress", "fli",    "die",   "mule",  "deni",  "die",  "agre",
                         "own",    "humbl",  "size",  "meet",  "state", "siez", "item",
                         "sensat", "tradit", "refer", "colon", "plot"};
  for (std::size_t i = 0; i < words.size(); ++i)
    EXPECT_EQ(porter_stem(words[i]), stems[i]) << words[i];
  // Irregular forms bypass the rules; "ies" on a four-letter word keeps "ie".
  EXPECT_EQ(porter_stem("dying"), "die");
  EXPECT_EQ(porter_stem("news"), "news");
  EXPECT_EQ(porter_stem("ties"), "tie");
  // step 1c: y -> i after a consonant ("happy" -> "happi", "enjoy" stays).
  EXPECT_EQ(porter_stem("happy"), "happi");
  EXPECT_EQ(porter_stem("enjoy"), "enjoy");
}

// ------------------------------------------------------------------------------------ rouge-score

TEST(RougeScore, Tokenizer) {
  // Lowercased, every run outside [a-z0-9] separates: "café" loses its "é".
  EXPECT_EQ(rouge_tokenize("The Caf\xC3\xA9's 2nd-best!", false),
            (Strings{"the", "caf", "s", "2nd", "best"}));
  // U+212A lowers to 'k'; U+0130 to "i" + a combining dot, which separates.
  EXPECT_EQ(rouge_tokenize("\xE2\x84\xAA"
                           "elvin \xC4\xB0stanbul",
                           false),
            (Strings{"kelvin", "i", "stanbul"}));
  // The stemmer only touches tokens longer than 3 characters.
  EXPECT_EQ(rouge_tokenize("dogs running ran", true), (Strings{"dog", "run", "ran"}));
  EXPECT_EQ(rouge_tokenize("", true), Strings{});
}

TEST(RougeScore, ReadmeExample) {
  // target: the quick brown fox jumps over the lazy dog (9); prediction: the quick brown dog
  // jumps on the log (8). Shared unigrams: the x2, quick, brown, dog, jumps = 6:
  // P = 6/8, R = 6/9, F = 0.70588...; LCS "the quick brown jumps the" = 5: P = 5/8, R = 5/9.
  const RougeScores s = rouge_score("The quick brown fox jumps over the lazy dog",
                                    "The quick brown dog jumps on the log.", false);
  EXPECT_EQ(s.rouge1.precision, 0.75);
  EXPECT_NEAR(s.rouge1.recall, 0.6666666666666666, 1e-15);
  EXPECT_NEAR(s.rouge1.fmeasure, 0.7058823529411765, 1e-15);
  EXPECT_NEAR(s.rougeL.precision, 0.625, 1e-15);
  EXPECT_NEAR(s.rougeL.fmeasure, 0.5882352941176471, 1e-15);
}

TEST(RougeScore, EmptyStemmerAndSummaryLevel) {
  const RougeScores empty = rouge_score("a b", "", true);
  EXPECT_EQ(empty.rouge1.fmeasure, 0.0);
  EXPECT_EQ(empty.rougeL.fmeasure, 0.0);
  EXPECT_EQ(empty.rougeLsum.fmeasure, 0.0);
  // "running dogs" vs "run dog": nothing shared without the stemmer, everything with it.
  EXPECT_EQ(rouge_score("running dogs", "run dog", false).rouge1.fmeasure, 0.0);
  EXPECT_EQ(rouge_score("running dogs", "run dog", true).rouge1.fmeasure, 1.0);
  // Lines swapped: rougeL sees [c d a b] vs [a b c d] (LCS 2 of 4 -> 0.5); rougeLsum matches
  // each target line against the prediction lines (union LCS): 4 hits of 4 -> 1.
  const RougeScores s = rouge_score("a b\nc d", "c d\na b", false);
  EXPECT_EQ(s.rougeL.fmeasure, 0.5);
  EXPECT_EQ(s.rougeLsum.fmeasure, 1.0);
}

TEST(RougeScore, ScoreMultiKeepsTheFirstBest) {
  // Prediction "a b". Target "a": P = 1/2, R = 1, F = 2/3. Target "a b c d": P = 1, R = 1/2,
  // F = 2/3 as well: the tie keeps the first target.
  const RougeScores s = rouge_score_multi({"a", "a b c d"}, "a b", false);
  EXPECT_EQ(s.rouge1.precision, 0.5);
  EXPECT_EQ(s.rouge1.recall, 1.0);
  // rouge2: "a" has no bigram (F 0); "a b c d" shares "a b": P = 1, R = 1/3, F = 0.5.
  EXPECT_EQ(s.rouge2.fmeasure, 0.5);
}

// ------------------------------------------------------------------------------------ torchmetrics

TEST(TorchmetricsRouge, Float32AndBestPerKey) {
  // As above, each value rounded to float32: F = float(2/3) = 0.6666666865348816.
  const TorchmetricsRouge t = torchmetrics_rouge("a b", {"a", "a b c d"});
  EXPECT_EQ(t.rouge1_fmeasure, static_cast<float>(2.0 / 3.0));
  EXPECT_EQ(static_cast<double>(t.rouge1_fmeasure), 0.6666666865348816);
  EXPECT_EQ(t.rouge1_precision, 0.5f);  // tie: the first reference
  EXPECT_EQ(t.rouge2_fmeasure, 0.5f);   // chosen separately: the second reference
  EXPECT_EQ(t.rougeL_precision, 0.5f);
  // No token on one side: zeros.
  EXPECT_EQ(torchmetrics_rouge("", {"a"}).rougeL_fmeasure, 0.0f);
}

// ------------------------------------------------------------------------------------ SQuAD

TEST(Squad, Normalization) {
  EXPECT_EQ(squad_normalize("The  Cat!"), "cat");
  EXPECT_EQ(squad_normalize("an apple a day"), "apple day");
  // A decomposed accent is not a word character, so the "a" before it is a word of its own.
  EXPECT_EQ(squad_normalize("A\xCC\x81"), "\xCC\x81");
  // An accented letter is: "thé" is not "the".
  EXPECT_EQ(squad_normalize("Th\xC3\xA9"), "th\xC3\xA9");
  // Only ASCII punctuation goes: the curly quotes stay.
  EXPECT_EQ(squad_normalize("\xE2\x80\x9Cyes\xE2\x80\x9D."), "\xE2\x80\x9Cyes\xE2\x80\x9D");
}

TEST(Squad, ExactMatchAndF1) {
  // Two empty answers: EM true, F1 0 (no shared token).
  EXPECT_TRUE(squad_exact_match("", {""}));
  EXPECT_EQ(squad_f1("", {""}), 0.0);
  // Greek final sigma: "ΟΔΟΣ" lowers to "οδος" with a final ς.
  EXPECT_TRUE(
      squad_exact_match("\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3", {"\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82"}));
  // "the cat sat" -> "cat sat"; "a cat sat down" -> "cat sat down": 2 shared, P = 1, R = 2/3,
  // F1 = 2 * 1 * 2/3 / (5/3) = 0.8. The best of several answers counts.
  EXPECT_NEAR(squad_f1("the cat sat", {"a cat sat down"}), 0.8, 1e-15);
  EXPECT_EQ(squad_f1("the cat sat", {"dog", "cat sat"}), 1.0);
  // Corpus: EM 1 + 0, F1 1 + 0 over 2 items -> 50 and 50 on the 0-100 scale.
  const SquadCorpus c = squad_evaluate({"cat", "dog"}, {{"cat"}, {"a cat"}});
  EXPECT_EQ(c.exact_match, 50.0);
  EXPECT_EQ(c.f1, 50.0);
}

// ------------------------------------------------------------------------------------ DiffuSeq

TEST(DiffuSeq, DistinctNGrams) {
  // "a a b": unigrams a, a, b -> 2 unique of 3; bigrams "a a", "a b" -> 2 of 2.
  EXPECT_EQ(distinct_n_gram({"a a b"}, 1), 2.0 / 3.0);
  EXPECT_EQ(distinct_n_gram({"a a b"}, 2), 1.0);
  // One hypothesis without a bigram makes the whole set 0 (the script's early return).
  EXPECT_EQ(distinct_n_gram({"a b", "c"}, 2), 0.0);
  EXPECT_EQ(distinct_n_gram({""}, 1), 0.0);
  // Pooled: a, b, a, c -> 3 of 4.
  EXPECT_EQ(distinct_n_gram_inter_sent({"a b", "a c"}, 1), 0.75);
  EXPECT_EQ(distinct_n_gram_inter_sent({"a b"}, 4), 0.0);
  // Unicode tokens are whole str.split() words.
  EXPECT_EQ(distinct_n_gram({"\xE6\x9D\xB1\xE4\xBA\xAC \xE6\x9D\xB1\xE4\xBA\xAC"}, 1), 0.5);
}

TEST(DiffuSeq, DiversityOfSetAndLength) {
  // One sample: no pair, so self-BLEU is the script's [0]; its one 4-gram is unique: div-4 1.
  const SetDiversity one = diversity_of_set({"a b c d"});
  EXPECT_EQ(one.self_bleu, 0.0);
  EXPECT_EQ(one.div4, 1.0);
  // Two identical samples: get_bleu = 1 for the pair; 4-grams "a b c d" twice -> 1 of 2.
  const SetDiversity two = diversity_of_set({"a b c d", "a b c d"});
  EXPECT_NEAR(two.self_bleu, 1.0, 1e-12);
  EXPECT_EQ(two.div4, 0.5);
  EXPECT_EQ(diffuseq_length("Hello world ."), 3u);
  EXPECT_EQ(diffuseq_length(""), 1u);
}

}  // namespace
}  // namespace mds::metrics
