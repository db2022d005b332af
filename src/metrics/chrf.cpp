#include "metrics/chrf.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "metrics/text.h"

namespace mds::metrics {

namespace {

constexpr int kCharOrder = 6;
constexpr int kFactor = 2 * 2;  // beta ** 2

using CharNgrams = std::array<std::unordered_map<std::u32string, int64_t>, kCharOrder>;

// extract_all_char_ngrams: whitespace removed (''.join(s.split())), code-point n-grams.
CharNgrams char_ngrams(const std::string& text) {
  std::u32string joined;
  for (char32_t c : utf8_to_u32(text)) {
    if (!is_python_space(c)) joined.push_back(c);
  }
  CharNgrams out;
  for (std::size_t n = 1; n <= kCharOrder; ++n) {
    for (std::size_t i = 0; i + n <= joined.size(); ++i) ++out[n - 1][joined.substr(i, n)];
  }
  return out;
}

ChrfStats match_stats(const CharNgrams& hyp, const CharNgrams& ref) {
  ChrfStats stats{};
  for (int n = 0; n < kCharOrder; ++n) {
    int64_t hyp_count = 0, ref_count = 0, match = 0;
    for (const auto& [ngram, count] : hyp[n]) {
      hyp_count += count;
      auto it = ref[n].find(ngram);
      if (it != ref[n].end()) match += std::min(count, it->second);
    }
    for (const auto& kv : ref[n]) ref_count += kv.second;
    stats[3 * n] = ref[n].empty() ? 0 : hyp_count;
    stats[3 * n + 1] = ref_count;
    stats[3 * n + 2] = match;
  }
  return stats;
}

std::string nrefs_of(const std::vector<std::vector<std::string>>& refs) {
  std::set<std::size_t> counts;
  for (const auto& r : refs) counts.insert(r.size());
  return counts.size() == 1 ? std::to_string(*counts.begin()) : "var";
}

}  // namespace

double chrf_from_stats(const ChrfStats& stats) {
  double avg_prec = 0.0, avg_rec = 0.0;
  int effective_order = 0;
  for (int i = 0; i < kCharOrder; ++i) {
    const int64_t n_hyp = stats[3 * i], n_ref = stats[3 * i + 1], n_match = stats[3 * i + 2];
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += static_cast<double>(n_match) / static_cast<double>(n_hyp);
      avg_rec += static_cast<double>(n_match) / static_cast<double>(n_ref);
      ++effective_order;
    }
  }
  if (effective_order == 0) return 0.0;
  avg_prec /= effective_order;
  avg_rec /= effective_order;
  if (avg_prec + avg_rec == 0.0) return 0.0;
  double score = (1 + kFactor) * avg_prec * avg_rec;
  score /= (kFactor * avg_prec) + avg_rec;
  return 100 * score;
}

ChrfStats chrf_segment_stats(const std::string& hypothesis, const std::vector<std::string>& refs) {
  MDS_CHECK(!refs.empty(), "chrF: a segment needs at least one reference");
  const CharNgrams hyp = char_ngrams(hypothesis);
  ChrfStats best{};
  double best_f = -1.0;
  for (const std::string& ref : refs) {
    const ChrfStats stats = match_stats(hyp, char_ngrams(ref));
    const double f = chrf_from_stats(stats);
    if (f > best_f) {
      best_f = f;
      best = stats;
    }
  }
  return best;
}

double sacrebleu_sentence_chrf(const std::string& hypothesis,
                               const std::vector<std::string>& refs) {
  return chrf_from_stats(chrf_segment_stats(hypothesis, refs));
}

double sacrebleu_corpus_chrf(const std::vector<std::string>& hypotheses,
                             const std::vector<std::vector<std::string>>& refs) {
  MDS_CHECK(hypotheses.size() == refs.size(), "chrF: ", hypotheses.size(), " hypotheses but ",
            refs.size(), " reference lists");
  ChrfStats sum{};
  for (std::size_t i = 0; i < hypotheses.size(); ++i) {
    const ChrfStats s = chrf_segment_stats(hypotheses[i], refs[i]);
    for (std::size_t k = 0; k < sum.size(); ++k) sum[k] += s[k];
  }
  return chrf_from_stats(sum);
}

std::string sacrebleu_chrf_signature(const std::vector<std::vector<std::string>>& refs) {
  return "nrefs:" + nrefs_of(refs) + "|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0";
}

}  // namespace mds::metrics
