// BLEU as sacreBLEU 2.6.0 computes it (sacrebleu/metrics/bleu.py): 13a tokenization,
// case-sensitive, "exp" smoothing, max n-gram order 4, any number of references per segment.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mds::metrics {

// Sufficient statistics of one segment or of a corpus (sums over its segments).
struct BleuStats {
  int64_t sys_len = 0;
  int64_t ref_len = 0;
  std::array<int64_t, 4> counts{};  // matched hypothesis n-grams, n = 1..4
  std::array<int64_t, 4> totals{};  // hypothesis n-grams
};

struct BleuScore {
  double score = 0.0;  // 0-100
  std::array<int64_t, 4> counts{};
  std::array<int64_t, 4> totals{};
  std::array<double, 4> precisions{};  // percent
  double bp = 0.0;
  int64_t sys_len = 0;
  int64_t ref_len = 0;
};

// One segment's statistics: n-gram matches clipped by the highest count in any reference, and the
// closest reference length (the shorter on a tie). `refs` must not be empty.
BleuStats sacrebleu_segment_stats(const std::string& hypothesis,
                                  const std::vector<std::string>& refs);

// BLEU.compute_bleu with smooth_method="exp".
BleuScore sacrebleu_compute_bleu(const BleuStats& stats, bool effective_order);

// sacrebleu.sentence_bleu(h, refs): effective order on.
BleuScore sacrebleu_sentence_bleu(const std::string& hypothesis,
                                  const std::vector<std::string>& refs);

// sacrebleu.corpus_bleu(hyps, streams) where refs[i] are the references of hyps[i] (their count may
// vary: the streams hold None where an item has fewer, which sacreBLEU drops). No effective order.
BleuScore sacrebleu_corpus_bleu(const std::vector<std::string>& hypotheses,
                                const std::vector<std::vector<std::string>>& refs);

// The signature sacreBLEU prints, e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
// (nrefs:var when the counts differ).
std::string sacrebleu_bleu_signature(const std::vector<std::vector<std::string>>& refs,
                                     bool effective_order);

}  // namespace mds::metrics
