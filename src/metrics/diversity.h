// DiffuSeq's corpus and diversity helpers (scripts/eval_seq2seq.py, Shark-NLP/DiffuSeq f78945d7).
// Averages are numpy.mean (metrics/pysum.h).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mds::metrics {

// distinct_n_gram(hyps, n): the mean over hypotheses of unique / total n-grams of str.split();
// 0 for the whole set as soon as one hypothesis has no n-gram.
double distinct_n_gram(const std::vector<std::string>& hypotheses, std::size_t n);

// distinct_n_gram_inter_sent(hyps, n): unique / total n-grams pooled over the hypotheses (0 when
// there are none).
double distinct_n_gram_inter_sent(const std::vector<std::string>& hypotheses, std::size_t n);

struct SetDiversity {
  double self_bleu = 0.0;  // mean of get_bleu(hyps[i], hyps[j]) over i < j (0 for one sample)
  double div4 = 0.0;       // distinct_n_gram_inter_sent(hyps, 4)
};

// diversityOfSet(hyps): the candidates generated for one source.
SetDiversity diversity_of_set(const std::vector<std::string>& hypotheses);

// The script's "avg len" of one hypothesis: len(h.split(' ')).
std::size_t diffuseq_length(const std::string& hypothesis);

}  // namespace mds::metrics
