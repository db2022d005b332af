// NLTK 3.8.1 sentence BLEU with method4 smoothing (nltk/translate/bleu_score.py), in the same
// floating-point operations as the Python code:
//   p_n = Fraction(matches_n, max(1, hyp n-grams)); matches clipped by the max reference count
//   0 when no unigram matches
//   method4, for each n with p_n = 0 (only when len(hyp) > 1), incvnt = 1, 2, ...:
//     p_n = (1 / (2^incvnt * 5 / ln(len(hyp)))) / denominator_n
//   BLEU = BP * exp(fsum(0.25 * ln p_n for p_n > 0))
//   BP = 1 when c > r, 0 when c = 0, else exp(1 - r/c); r the closest reference length (ties:
//   the shorter)
#include "metrics/nltk_bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <unordered_map>

#include "core/error.h"
#include "metrics/nltk_corpus_bleu.h"
#include "metrics/text.h"

namespace mds {


std::vector<std::string> split_python_whitespace(const std::string& text) {
  return metrics::python_split(text);
}

double python_fsum(const std::vector<double>& values) {
  // CPython's math_fsum for finite inputs.
  std::vector<double> p;
  for (double x : values) {
    std::size_t i = 0;
    for (std::size_t j = 0; j < p.size(); ++j) {
      double y = p[j];
      if (std::fabs(x) < std::fabs(y)) std::swap(x, y);
      const double hi = x + y;
      const double yr = hi - x;
      const double lo = y - yr;
      if (lo != 0.0) p[i++] = lo;
      x = hi;
    }
    p.resize(i);
    if (x != 0.0) p.push_back(x);
  }
  double hi = 0.0;
  std::size_t n = p.size();
  if (n > 0) {
    hi = p[--n];
    double lo = 0.0;
    while (n > 0) {
      const double x = hi;
      const double y = p[--n];
      hi = x + y;
      const double yr = hi - x;
      lo = y - yr;
      if (lo != 0.0) break;
    }
    // Half-even rounding across several partials.
    if (n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0))) {
      const double y = lo * 2.0;
      const double x = hi + y;
      const double yr = x - hi;
      if (y == yr) hi = x;
    }
  }
  return hi;
}

double nltk_sentence_bleu_method4(const std::vector<std::vector<std::string>>& references,
                                  const std::vector<std::string>& hypothesis) {
  MDS_CHECK(!references.empty(), "sentence BLEU: no reference");
  // NLTK's sentence_bleu is corpus_bleu over one sentence.
  const std::vector<std::vector<std::vector<std::string>>> refs_per_item{references};
  const std::vector<std::vector<std::string>> hypotheses{hypothesis};
  return metrics::nltk_corpus_bleu(refs_per_item, hypotheses, metrics::NltkSmoothing::method4);
}

double diffuseq_bleu(const std::string& hypothesis, const std::string& reference) {
  return nltk_sentence_bleu_method4({split_python_whitespace(reference)},
                                    split_python_whitespace(hypothesis));
}

}  // namespace mds
