#include "metrics/nltk_corpus_bleu.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <unordered_map>

#include "core/error.h"
#include "metrics/nltk_bleu.h"
#include "metrics/text.h"

namespace mds::metrics {

namespace {

constexpr int kOrders = 4;
constexpr int64_t kSmoothK = 5;  // SmoothingFunction(k=5)

// n-gram -> count; \x1f is Python whitespace, so no token contains it.
using NgramCounts = std::unordered_map<std::string, int64_t>;

NgramCounts count_ngrams(const std::vector<std::string>& tokens, std::size_t n) {
  NgramCounts counts;
  for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (std::size_t k = 1; k < n; ++k) key.append("\x1f").append(tokens[i + k]);
    ++counts[key];
  }
  return counts;
}

}  // namespace

double nltk_corpus_bleu(const std::vector<std::vector<std::vector<std::string>>>& refs,
                        const std::vector<std::vector<std::string>>& hypotheses,
                        NltkSmoothing smoothing) {
  MDS_CHECK(refs.size() == hypotheses.size(), "NLTK corpus BLEU: ", hypotheses.size(),
            " hypotheses but ", refs.size(), " reference lists");
  int64_t numerators[kOrders] = {0, 0, 0, 0}, denominators[kOrders] = {0, 0, 0, 0};
  int64_t hyp_lengths = 0, ref_lengths = 0;
  for (std::size_t s = 0; s < hypotheses.size(); ++s) {
    const auto& hyp = hypotheses[s];
    MDS_CHECK(!refs[s].empty(), "NLTK corpus BLEU: hypothesis ", s + 1, " has no reference");
    for (int n = 1; n <= kOrders; ++n) {  // modified_precision
      const NgramCounts counts = count_ngrams(hyp, static_cast<std::size_t>(n));
      NgramCounts max_counts;
      for (const auto& ref : refs[s]) {
        const NgramCounts ref_counts = count_ngrams(ref, static_cast<std::size_t>(n));
        for (const auto& kv : counts) {
          auto it = ref_counts.find(kv.first);
          int64_t& best = max_counts[kv.first];
          best = std::max(best, it == ref_counts.end() ? int64_t{0} : it->second);
        }
      }
      int64_t clipped = 0, total = 0;
      for (const auto& [ngram, count] : counts) {
        clipped += std::min(count, max_counts[ngram]);
        total += count;
      }
      numerators[n - 1] += clipped;
      denominators[n - 1] += std::max<int64_t>(1, total);
    }
    // closest_ref_length: min by (|ref_len - hyp_len|, ref_len).
    const auto hyp_len = static_cast<int64_t>(hyp.size());
    int64_t closest = -1;
    for (const auto& ref : refs[s]) {
      const auto len = static_cast<int64_t>(ref.size());
      const int64_t d = std::llabs(len - hyp_len), best_d = std::llabs(closest - hyp_len);
      if (closest < 0 || d < best_d || (d == best_d && len < closest)) closest = len;
    }
    hyp_lengths += hyp_len;
    ref_lengths += closest;
  }
  if (numerators[0] == 0) return 0.0;

  double bp;  // brevity_penalty(ref_lengths, hyp_lengths)
  if (hyp_lengths > ref_lengths) {
    bp = 1.0;
  } else if (hyp_lengths == 0) {
    bp = 0.0;
  } else {
    bp = std::exp(1.0 - static_cast<double>(ref_lengths) / static_cast<double>(hyp_lengths));
  }

  std::vector<double> terms;
  int64_t incvnt = 1;
  for (int i = 0; i < kOrders; ++i) {
    double p;
    if (numerators[i] != 0) {
      p = static_cast<double>(numerators[i]) / static_cast<double>(denominators[i]);
    } else if (smoothing == NltkSmoothing::none) {
      p = DBL_MIN;  // method0: sys.float_info.min
    } else if (hyp_lengths > 1) {
      const double numerator = 1.0 / (static_cast<double>((int64_t{1} << incvnt) * kSmoothK) /
                                      std::log(static_cast<double>(hyp_lengths)));
      p = numerator / static_cast<double>(denominators[i]);
      ++incvnt;
    } else {
      continue;  // p_n = 0 is left out (`if p_i > 0`)
    }
    terms.push_back(0.25 * std::log(p));
  }
  return bp * std::exp(mds::python_fsum(terms));
}

double nltk_corpus_bleu(const std::vector<std::vector<std::string>>& refs,
                        const std::vector<std::string>& hypotheses, NltkSmoothing smoothing) {
  std::vector<std::vector<std::vector<std::string>>> ref_tokens(refs.size());
  for (std::size_t i = 0; i < refs.size(); ++i) {
    for (const auto& r : refs[i]) ref_tokens[i].push_back(python_split(r));
  }
  std::vector<std::vector<std::string>> hyp_tokens;
  for (const auto& h : hypotheses) hyp_tokens.push_back(python_split(h));
  return nltk_corpus_bleu(ref_tokens, hyp_tokens, smoothing);
}

}  // namespace mds::metrics
