#include "metrics/diversity.h"

#include <unordered_set>

#include "metrics/nltk_bleu.h"
#include "metrics/pysum.h"
#include "metrics/text.h"

namespace mds::metrics {

namespace {

// nltk.ngrams(hyp.split(), n) as strings; \x1f is Python whitespace, so no token contains it.
void append_ngrams(const std::string& text, std::size_t n, std::vector<std::string>& out) {
  const std::vector<std::string> tokens = python_split(text);
  for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (std::size_t k = 1; k < n; ++k) key.append("\x1f").append(tokens[i + k]);
    out.push_back(std::move(key));
  }
}

double unique_ratio(const std::vector<std::string>& ngrams) {
  const std::unordered_set<std::string> unique(ngrams.begin(), ngrams.end());
  return static_cast<double>(unique.size()) / static_cast<double>(ngrams.size());
}

}  // namespace

double distinct_n_gram(const std::vector<std::string>& hypotheses, std::size_t n) {
  std::vector<double> dist;
  for (const std::string& h : hypotheses) {
    std::vector<std::string> ngrams;
    append_ngrams(h, n, ngrams);
    if (ngrams.empty()) return 0.0;  // the script's early `return 0`
    dist.push_back(unique_ratio(ngrams));
  }
  return numpy_mean(dist);
}

double distinct_n_gram_inter_sent(const std::vector<std::string>& hypotheses, std::size_t n) {
  std::vector<std::string> ngrams;
  for (const std::string& h : hypotheses) append_ngrams(h, n, ngrams);
  if (ngrams.empty()) return 0.0;
  return unique_ratio(ngrams);
}

SetDiversity diversity_of_set(const std::vector<std::string>& hypotheses) {
  std::vector<double> self_bleu;
  for (std::size_t i = 0; i < hypotheses.size(); ++i) {
    for (std::size_t j = i + 1; j < hypotheses.size(); ++j) {
      self_bleu.push_back(mds::diffuseq_bleu(hypotheses[i], hypotheses[j]));
    }
  }
  if (self_bleu.empty()) self_bleu.push_back(0.0);
  return {numpy_mean(self_bleu), distinct_n_gram_inter_sent(hypotheses, 4)};
}

std::size_t diffuseq_length(const std::string& hypothesis) {
  return python_split_space_count(hypothesis);
}

}  // namespace mds::metrics
