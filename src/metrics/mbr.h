// Minimum-Bayes-risk selection among sampled candidates (DiffuSeq's selectBest, eval_seq2seq.py).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mds {

// The index i maximising sum_{j != i} score(hypothesis = c_i, reference = c_j); the first index
// wins a tie.
//   "bleu"     DiffuSeq's get_bleu: NLTK sentence BLEU, method4 (metrics/nltk_bleu.h); the row sums
//              are numpy's (pairwise) sums, so the pick matches selectBest exactly
//   "rouge-l"  rouge_l_fmeasure below
// Throws on an empty candidate list or an unknown metric.
std::size_t mbr_select(const std::vector<std::string>& candidates, const std::string& metric);

// MBR for editing tasks (sample.mbr_source): the source joins the candidates, but not the evidence
// they are scored against. It is chosen, and candidates.size() returned, when its mean agreement with
// the samples, score(hypothesis = source, reference = c_j) over every j, exceeds mbr_select's pick's
// mean agreement with the others. Samples damaged at different places agree with the source more than
// with each other, so an output differs from the source only where the samples agree on the change.
// Needs at least two candidates (one has no others to agree with).
std::size_t mbr_select_or_source(const std::vector<std::string>& candidates, const std::string& metric,
                                 const std::string& source);

// ROUGE-L F-measure as rouge-score / torchmetrics without stemming: lowercase, every run outside
// [a-z0-9] is a separator, LCS over the tokens; P = lcs / |hyp|, R = lcs / |ref|,
// F = 2PR / (P + R) (0 when either side has no token). Non-ASCII letters separate words, as in
// rouge-score (only the Kelvin sign and the dotted capital I lowercase to ASCII there; so here).
double rouge_l_fmeasure(const std::string& hypothesis, const std::string& reference);

}  // namespace mds
