#include "metrics/sacrebleu_bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "metrics/sacrebleu_tokenizer.h"

namespace mds::metrics {

namespace {

constexpr int kOrder = 4;

// n-gram (tokens joined by a space, which no token contains) -> count, n = 1..4.
using NgramCounts = std::unordered_map<std::string, int64_t>;

NgramCounts extract_ngrams(const std::vector<std::string>& tokens) {
  NgramCounts counts;
  for (std::size_t n = 1; n <= kOrder; ++n) {
    for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
      std::string key = tokens[i];
      for (std::size_t k = 1; k < n; ++k) key.append(" ").append(tokens[i + k]);
      ++counts[key];
    }
  }
  return counts;
}

std::size_t order_of(const std::string& ngram) {
  return 1 + static_cast<std::size_t>(std::count(ngram.begin(), ngram.end(), ' '));
}

// sacrebleu.utils.my_log: log(0) is -9999999999 rather than an error.
double my_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

}  // namespace

BleuStats sacrebleu_segment_stats(const std::string& hypothesis,
                                  const std::vector<std::string>& refs) {
  MDS_CHECK(!refs.empty(), "sacreBLEU: a segment needs at least one reference");
  NgramCounts ref_ngrams;
  std::vector<int64_t> ref_lens;
  for (const std::string& ref : refs) {
    const std::vector<std::string> tokens = tokenize_13a(ref);
    ref_lens.push_back(static_cast<int64_t>(tokens.size()));
    for (const auto& [ngram, count] : extract_ngrams(tokens)) {
      int64_t& best = ref_ngrams[ngram];
      best = std::max(best, count);
    }
  }
  const std::vector<std::string> hyp_tokens = tokenize_13a(hypothesis);
  BleuStats stats;
  stats.sys_len = static_cast<int64_t>(hyp_tokens.size());
  // _get_closest_ref_len: the first of the closest, replaced by a later one only if shorter.
  int64_t closest_diff = -1, closest_len = -1;
  for (int64_t len : ref_lens) {
    const int64_t diff = std::llabs(stats.sys_len - len);
    if (closest_diff == -1 || diff < closest_diff) {
      closest_diff = diff;
      closest_len = len;
    } else if (diff == closest_diff && len < closest_len) {
      closest_len = len;
    }
  }
  stats.ref_len = closest_len;
  for (const auto& [ngram, count] : extract_ngrams(hyp_tokens)) {
    const std::size_t n = order_of(ngram) - 1;
    stats.totals[n] += count;
    auto it = ref_ngrams.find(ngram);
    if (it != ref_ngrams.end()) stats.counts[n] += std::min(count, it->second);
  }
  return stats;
}

BleuScore sacrebleu_compute_bleu(const BleuStats& stats, bool effective_order) {
  BleuScore out;
  out.counts = stats.counts;
  out.totals = stats.totals;
  out.sys_len = stats.sys_len;
  out.ref_len = stats.ref_len;
  if (stats.sys_len < stats.ref_len) {
    out.bp = stats.sys_len > 0 ? std::exp(1.0 - static_cast<double>(stats.ref_len) /
                                                    static_cast<double>(stats.sys_len))
                               : 0.0;
  } else {
    out.bp = 1.0;
  }
  // Early stop when nothing matches (sacreBLEU #141): score 0, precisions 0.
  if (std::all_of(stats.counts.begin(), stats.counts.end(), [](int64_t c) { return c == 0; })) {
    return out;
  }
  double smooth_mteval = 1.0;
  int eff_order = kOrder;
  for (int n = 1; n <= kOrder; ++n) {
    const int64_t total = stats.totals[n - 1], correct = stats.counts[n - 1];
    if (total == 0) break;
    if (effective_order) eff_order = n;
    if (correct == 0) {
      smooth_mteval *= 2;
      out.precisions[n - 1] = 100.0 / (smooth_mteval * static_cast<double>(total));
    } else {
      out.precisions[n - 1] = 100.0 * static_cast<double>(correct) / static_cast<double>(total);
    }
  }
  // Python's sum() adds left to right.
  double log_sum = 0.0;
  for (int n = 0; n < eff_order; ++n) log_sum += my_log(out.precisions[n]);
  out.score = out.bp * std::exp(log_sum / eff_order);
  return out;
}

BleuScore sacrebleu_sentence_bleu(const std::string& hypothesis,
                                  const std::vector<std::string>& refs) {
  return sacrebleu_compute_bleu(sacrebleu_segment_stats(hypothesis, refs), true);
}

BleuScore sacrebleu_corpus_bleu(const std::vector<std::string>& hypotheses,
                                const std::vector<std::vector<std::string>>& refs) {
  MDS_CHECK(hypotheses.size() == refs.size(), "sacreBLEU: ", hypotheses.size(), " hypotheses but ",
            refs.size(), " reference lists");
  BleuStats sum;
  for (std::size_t i = 0; i < hypotheses.size(); ++i) {
    const BleuStats s = sacrebleu_segment_stats(hypotheses[i], refs[i]);
    sum.sys_len += s.sys_len;
    sum.ref_len += s.ref_len;
    for (int n = 0; n < kOrder; ++n) {
      sum.counts[n] += s.counts[n];
      sum.totals[n] += s.totals[n];
    }
  }
  return sacrebleu_compute_bleu(sum, false);
}

std::string sacrebleu_bleu_signature(const std::vector<std::vector<std::string>>& refs,
                                     bool effective_order) {
  std::set<std::size_t> counts;
  for (const auto& r : refs) counts.insert(r.size());
  const std::string nrefs = counts.size() == 1 ? std::to_string(*counts.begin()) : "var";
  return "nrefs:" + nrefs + "|case:mixed|eff:" + (effective_order ? "yes" : "no") +
         "|tok:13a|smooth:exp|version:2.6.0";
}

}  // namespace mds::metrics
