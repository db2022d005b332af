// MBR selection (DiffuSeq's selectBest) and the ROUGE-L it can use instead of BLEU.
#include "metrics/mbr.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "metrics/nltk_bleu.h"

namespace mds {

namespace {

// numpy's pairwise_sum for float64 (8-way unrolled below 128 values), which np.sum(selfBleu, -1)
// applies to each row, starting from the identity 0.
double numpy_pairwise_sum(const double* a, std::size_t n) {
  if (n < 8) {
    double res = 0.0;
    for (std::size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (std::size_t k = 0; k < 8; ++k) r[k] = a[k];
    std::size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (std::size_t k = 0; k < 8; ++k) r[k] += a[i + k];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}

// rouge-score's tokenizer without stemming: lowercase, [^a-z0-9]+ -> separator.
std::vector<std::string> rouge_tokens(const std::string& text) {
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 'A' && c <= 'Z') {
      current.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      current.push_back(static_cast<char>(c));
    } else if (c == 0xe2 && i + 2 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) == 0x84 &&
               static_cast<unsigned char>(text[i + 2]) == 0xaa) {
      current.push_back('k');  // U+212A KELVIN SIGN lowercases to 'k'
      i += 2;
    } else if (c == 0xc4 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) == 0xb0) {
      current.push_back('i');  // U+0130 lowercases to 'i' + U+0307 (a separator)
      flush();
      i += 1;
    } else {
      flush();
    }
  }
  flush();
  return tokens;
}

std::size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::size_t> row(b.size() + 1, 0), next(b.size() + 1, 0);
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (std::size_t j = 0; j < b.size(); ++j) {
      next[j + 1] = a[i] == b[j] ? row[j] + 1 : std::max(row[j + 1], next[j]);
    }
    std::swap(row, next);
  }
  return row[b.size()];
}

}  // namespace

double rouge_l_fmeasure(const std::string& hypothesis, const std::string& reference) {
  const std::vector<std::string> hyp = rouge_tokens(hypothesis), ref = rouge_tokens(reference);
  if (hyp.empty() || ref.empty()) return 0.0;
  const auto lcs = static_cast<double>(lcs_length(ref, hyp));
  const double precision = lcs / static_cast<double>(hyp.size());
  const double recall = lcs / static_cast<double>(ref.size());
  return precision + recall > 0.0 ? 2.0 * precision * recall / (precision + recall) : 0.0;
}

std::size_t mbr_select(const std::vector<std::string>& candidates, const std::string& metric) {
  MDS_CHECK(!candidates.empty(), "MBR: no candidates");
  const bool bleu = metric == "bleu";
  MDS_CHECK(bleu || metric == "rouge-l", "MBR: unknown metric \"", metric,
            "\" (known: bleu, rouge-l)");
  const std::size_t n = candidates.size();
  std::vector<std::vector<std::string>> tokens;
  if (bleu) {
    for (const auto& c : candidates) tokens.push_back(split_python_whitespace(c));
  }
  std::size_t best = 0;
  double best_score = 0.0;
  std::vector<double> row(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      if (i == j) {
        row[j] = 0.0;  // selfBleu[i][i] = 0
      } else {
        row[j] = bleu ? nltk_sentence_bleu_method4({tokens[j]}, tokens[i])
                      : rouge_l_fmeasure(candidates[i], candidates[j]);
      }
    }
    const double score = numpy_pairwise_sum(row.data(), n);
    if (i == 0 || score > best_score) {  // np.argmax: the first maximum
      best = i;
      best_score = score;
    }
  }
  return best;
}

}  // namespace mds
