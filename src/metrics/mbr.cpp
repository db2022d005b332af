// MBR selection (DiffuSeq's selectBest) and the ROUGE-L it can use instead of BLEU.
#include "metrics/mbr.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "metrics/nltk_bleu.h"
#include "metrics/pysum.h"
#include "metrics/rouge_score.h"

namespace mds {

double rouge_l_fmeasure(const std::string& hypothesis, const std::string& reference) {
  // rouge-score's rougeL F-measure without stemming.
  return metrics::rouge_score(reference, hypothesis, /*stemmer=*/false).rougeL.fmeasure;
}

std::size_t mbr_select(const std::vector<std::string>& candidates, const std::string& metric) {
  MDS_CHECK(!candidates.empty(), "MBR: no candidates");
  const bool bleu = metric == "bleu";
  MDS_CHECK(bleu || metric == "rouge-l", "MBR: unknown metric \"", metric,
            "\" (known: bleu, rouge-l)");
  const std::size_t n = candidates.size();
  std::vector<std::vector<std::string>> tokens;
  if (bleu) {
    for (const auto& c : candidates) tokens.push_back(split_python_whitespace(c));
  }
  std::size_t best = 0;
  double best_score = 0.0;
  std::vector<double> row(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      if (i == j) {
        row[j] = 0.0;  // selfBleu[i][i] = 0
      } else {
        row[j] = bleu ? nltk_sentence_bleu_method4({tokens[j]}, tokens[i])
                      : rouge_l_fmeasure(candidates[i], candidates[j]);
      }
    }
    const double score = metrics::numpy_pairwise_sum(row.data(), n);
    if (i == 0 || score > best_score) {  // np.argmax: the first maximum
      best = i;
      best_score = score;
    }
  }
  return best;
}

}  // namespace mds
