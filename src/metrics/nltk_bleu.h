// NLTK's sentence BLEU with SmoothingFunction().method4 and uniform 4-gram weights, as DiffuSeq's
// get_bleu uses it (nltk.translate.bleu_score, NLTK 3.8.1), reproduced operation for operation so
// that the values agree with Python's bit for bit.
#pragma once

#include <string>
#include <vector>

namespace mds {

// Python's str.split() with no argument: splits on runs of Unicode whitespace (the ASCII set plus
// \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000; not
// U+200B), drops empty pieces. The input is UTF-8; invalid bytes are kept as parts of words.
std::vector<std::string> split_python_whitespace(const std::string& text);

// sentence_bleu(references, hypothesis, smoothing_function=SmoothingFunction().method4).
double nltk_sentence_bleu_method4(const std::vector<std::vector<std::string>>& references,
                                  const std::vector<std::string>& hypothesis);

// DiffuSeq's get_bleu(recover, reference): the above on reference.split() and recover.split().
double diffuseq_bleu(const std::string& hypothesis, const std::string& reference);

// Python's math.fsum: the correctly rounded sum (Shewchuk's partials, half-even across partials).
double python_fsum(const std::vector<double>& values);

}  // namespace mds
