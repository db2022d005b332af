// chrF as sacreBLEU 2.6.0 computes it (sacrebleu/metrics/chrf.py) with the defaults: chrF2
// (beta 2), character n-grams of order 1..6, no word n-grams, whitespace removed, case-sensitive,
// effective-order averaging (no eps smoothing).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mds::metrics {

// [hyp n-grams, ref n-grams, matches] per order; hyp n-grams count 0 when the reference has none.
using ChrfStats = std::array<int64_t, 18>;

// The statistics against the best of `refs` (highest chrF, the first on a tie).
ChrfStats chrf_segment_stats(const std::string& hypothesis, const std::vector<std::string>& refs);

// CHRF._compute_f_score: 0-100.
double chrf_from_stats(const ChrfStats& stats);

// sacrebleu.sentence_chrf(h, refs).
double sacrebleu_sentence_chrf(const std::string& hypothesis, const std::vector<std::string>& refs);

// sacrebleu.corpus_chrf(hyps, streams), refs[i] the references of hyps[i]: the best-reference
// statistics of every segment are summed.
double sacrebleu_corpus_chrf(const std::vector<std::string>& hypotheses,
                             const std::vector<std::vector<std::string>>& refs);

// "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0" (nrefs:var when counts differ).
std::string sacrebleu_chrf_signature(const std::vector<std::vector<std::string>>& refs);

}  // namespace mds::metrics
