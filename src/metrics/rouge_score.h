// ROUGE as Google's rouge-score 0.1.2 computes it (rouge_scorer.py, tokenize.py): rouge1, rouge2,
// rougeL and rougeLsum, with or without NLTK's Porter stemmer.
#pragma once

#include <string>
#include <vector>

namespace mds::metrics {

struct RougeValue {
  double precision = 0.0;
  double recall = 0.0;
  double fmeasure = 0.0;
};

struct RougeScores {
  RougeValue rouge1, rouge2, rougeL, rougeLsum;
};

// tokenize.tokenize: Python's str.lower(), every run outside [a-z0-9] becomes a separator (so
// accented and non-Latin letters split words), tokens longer than 3 characters are stemmed.
std::vector<std::string> rouge_tokenize(const std::string& text, bool stemmer);

// RougeScorer(["rouge1","rouge2","rougeL","rougeLsum"], use_stemmer).score(target, prediction).
// rougeLsum splits both texts on "\n" (dropping empty lines) and uses the union LCS with per-token
// clipping.
RougeScores rouge_score(const std::string& target, const std::string& prediction, bool stemmer);

// score_multi(targets, prediction): per ROUGE type, the target with the highest F-measure (the
// first on a tie). One target is the same as score().
RougeScores rouge_score_multi(const std::vector<std::string>& targets,
                              const std::string& prediction, bool stemmer);

// The LCS length of two token sequences (the DP table of _lcs_table).
std::size_t rouge_lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b);

}  // namespace mds::metrics
