// Exact match and token F1 as the official SQuAD v1.1 evaluate-v1.1.py computes them.
#pragma once

#include <string>
#include <vector>

namespace mds::metrics {

// normalize_answer: Python's str.lower(), ASCII punctuation (string.punctuation) deleted, the
// words "a", "an", "the" (\b-delimited, Unicode word characters) replaced by a space,
// whitespace collapsed.
std::string squad_normalize(const std::string& text);

// metric_max_over_ground_truths(exact_match_score, prediction, ground_truths).
bool squad_exact_match(const std::string& prediction,
                       const std::vector<std::string>& ground_truths);

// metric_max_over_ground_truths(f1_score, ...): 0-1; 0 when no token is shared (so two empty
// answers give 0).
double squad_f1(const std::string& prediction, const std::vector<std::string>& ground_truths);

struct SquadCorpus {
  double exact_match = 0.0;  // 0-100
  double f1 = 0.0;           // 0-100
};

// evaluate(dataset, predictions) with one question per item: 100 * sum / count.
SquadCorpus squad_evaluate(const std::vector<std::string>& predictions,
                           const std::vector<std::vector<std::string>>& ground_truths);

}  // namespace mds::metrics
