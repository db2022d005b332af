// NLTK's corpus_bleu (nltk/translate/bleu_score.py, NLTK 3.8.1 at f2a92bd7e) with uniform 4-gram
// weights, without smoothing or with SmoothingFunction().method4, in the same floating-point steps.
#pragma once

#include <string>
#include <vector>

namespace mds::metrics {

enum class NltkSmoothing { none, method4 };

// corpus_bleu(list_of_references, hypotheses) on tokens: refs[i] are the token lists of the
// references of hypotheses[i].
//   matches and hypothesis n-gram counts (max(1, count) per segment) are summed over the corpus;
//   0 when no unigram matches; without smoothing a zero precision becomes sys.float_info.min;
//   method4 replaces zero precisions (when the corpus has more than one hypothesis token) by
//   1 / (2^k * 5 / ln(hyp_len)) / denominator, k = 1, 2, ...; BLEU = BP * exp(fsum(0.25 ln p_n)).
double nltk_corpus_bleu(const std::vector<std::vector<std::vector<std::string>>>& refs,
                        const std::vector<std::vector<std::string>>& hypotheses,
                        NltkSmoothing smoothing);

// The same on strings, tokenized with Python's str.split().
double nltk_corpus_bleu(const std::vector<std::vector<std::string>>& refs,
                        const std::vector<std::string>& hypotheses, NltkSmoothing smoothing);

}  // namespace mds::metrics
