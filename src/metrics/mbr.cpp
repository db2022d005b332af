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

namespace {

// score(hypothesis, reference) under `metric`, on the texts or on their whitespace tokens (BLEU).
class Agreement {
 public:
  explicit Agreement(const std::string& metric) : bleu_(metric == "bleu") {
    MDS_CHECK(bleu_ || metric == "rouge-l", "MBR: unknown metric \"", metric, "\" (known: bleu, rouge-l)");
  }
  double operator()(const std::string& hypothesis, const std::vector<std::string>& hyp_tokens,
                    const std::string& reference, const std::vector<std::string>& ref_tokens) const {
    return bleu_ ? nltk_sentence_bleu_method4({ref_tokens}, hyp_tokens) : rouge_l_fmeasure(hypothesis, reference);
  }
  std::vector<std::string> tokens(const std::string& text) const {
    return bleu_ ? split_python_whitespace(text) : std::vector<std::string>{};
  }

 private:
  bool bleu_;
};

struct Pick {
  std::size_t index = 0;
  double sum = 0.0;  // its agreement with the other candidates, summed
};

Pick mbr_pick(const std::vector<std::string>& candidates, const Agreement& agree,
              const std::vector<std::vector<std::string>>& tokens) {
  const std::size_t n = candidates.size();
  Pick best;
  std::vector<double> row(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j)
      row[j] = i == j ? 0.0  // selfBleu[i][i] = 0
                      : agree(candidates[i], tokens[i], candidates[j], tokens[j]);
    const double score = metrics::numpy_pairwise_sum(row.data(), n);
    if (i == 0 || score > best.sum) best = {i, score};  // np.argmax: the first maximum
  }
  return best;
}

std::vector<std::vector<std::string>> tokens_of(const std::vector<std::string>& texts, const Agreement& agree) {
  std::vector<std::vector<std::string>> tokens;
  for (const auto& t : texts) tokens.push_back(agree.tokens(t));
  return tokens;
}

}  // namespace

std::size_t mbr_select(const std::vector<std::string>& candidates, const std::string& metric) {
  MDS_CHECK(!candidates.empty(), "MBR: no candidates");
  const Agreement agree(metric);
  return mbr_pick(candidates, agree, tokens_of(candidates, agree)).index;
}

std::size_t mbr_select_or_source(const std::vector<std::string>& candidates, const std::string& metric,
                                 const std::string& source) {
  MDS_CHECK(candidates.size() >= 2, "MBR with the source: needs at least 2 candidates, got ", candidates.size());
  const Agreement agree(metric);
  const auto tokens = tokens_of(candidates, agree);
  const Pick best = mbr_pick(candidates, agree, tokens);
  const std::size_t n = candidates.size();
  const std::vector<std::string> source_tokens = agree.tokens(source);
  std::vector<double> row(n);
  for (std::size_t j = 0; j < n; ++j) row[j] = agree(source, source_tokens, candidates[j], tokens[j]);
  const double source_mean = metrics::numpy_pairwise_sum(row.data(), n) / static_cast<double>(n);
  return source_mean > best.sum / static_cast<double>(n - 1) ? n : best.index;
}

}  // namespace mds
