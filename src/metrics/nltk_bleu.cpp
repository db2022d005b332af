// NLTK 3.8.1 sentence BLEU with method4 smoothing (nltk/translate/bleu_score.py), in the same
// floating-point operations as the Python code:
//   p_n = Fraction(matches_n, max(1, hyp n-grams)); matches clipped by the max reference count
//   0 when no unigram matches
//   method4, for each n with p_n = 0 (only when len(hyp) > 1), incvnt = 1, 2, ...:
//     p_n = (1 / (2^incvnt * 5 / ln(len(hyp)))) / denominator_n
//   BLEU = BP * exp(fsum(0.25 * ln p_n for p_n > 0))
//   BP = 1 when c > r, 0 when c = 0, else exp(1 - r/c); r the closest reference length (ties:
//   the shorter)
#include "metrics/nltk_bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <unordered_map>

#include "core/error.h"

namespace mds {

namespace {

bool is_python_space(uint32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
  return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
         c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// Decodes one UTF-8 code point at text[i]; returns its byte length (1 for an invalid byte, which
// then counts as a non-space character).
std::size_t decode_utf8(const std::string& text, std::size_t i, uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  std::size_t n = 0;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xe0) == 0xc0) {
    n = 2;
    cp = b0 & 0x1f;
  } else if ((b0 & 0xf0) == 0xe0) {
    n = 3;
    cp = b0 & 0x0f;
  } else if ((b0 & 0xf8) == 0xf0) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    cp = 0xfffd;
    return 1;
  }
  if (i + n > text.size()) {
    cp = 0xfffd;
    return 1;
  }
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xc0) != 0x80) {
      cp = 0xfffd;
      return 1;
    }
    cp = (cp << 6) | (b & 0x3f);
  }
  return n;
}

// n-gram -> count; tokens never contain \x1f (Python whitespace), so it is a safe joiner.
using NgramCounts = std::unordered_map<std::string, int64_t>;

NgramCounts count_ngrams(const std::vector<std::string>& tokens, std::size_t n) {
  NgramCounts counts;
  if (tokens.size() < n) return counts;
  for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (std::size_t k = 1; k < n; ++k) key.append("\x1f").append(tokens[i + k]);
    ++counts[key];
  }
  return counts;
}

}  // namespace

std::vector<std::string> split_python_whitespace(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  bool in_word = false;
  for (std::size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const std::size_t n = decode_utf8(text, i, cp);
    if (is_python_space(cp)) {
      if (in_word) out.push_back(std::move(current));
      current.clear();
      in_word = false;
    } else {
      current.append(text, i, n);
      in_word = true;
    }
    i += n;
  }
  if (in_word) out.push_back(std::move(current));
  return out;
}

double python_fsum(const std::vector<double>& values) {
  // CPython's math_fsum for finite inputs.
  std::vector<double> p;
  for (double x : values) {
    std::size_t i = 0;
    for (std::size_t j = 0; j < p.size(); ++j) {
      double y = p[j];
      if (std::fabs(x) < std::fabs(y)) std::swap(x, y);
      const double hi = x + y;
      const double yr = hi - x;
      const double lo = y - yr;
      if (lo != 0.0) p[i++] = lo;
      x = hi;
    }
    p.resize(i);
    if (x != 0.0) p.push_back(x);
  }
  double hi = 0.0;
  std::size_t n = p.size();
  if (n > 0) {
    hi = p[--n];
    double lo = 0.0;
    while (n > 0) {
      const double x = hi;
      const double y = p[--n];
      hi = x + y;
      const double yr = hi - x;
      lo = y - yr;
      if (lo != 0.0) break;
    }
    // Half-even rounding across several partials.
    if (n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0))) {
      const double y = lo * 2.0;
      const double x = hi + y;
      const double yr = x - hi;
      if (y == yr) hi = x;
    }
  }
  return hi;
}

double nltk_sentence_bleu_method4(const std::vector<std::vector<std::string>>& references,
                                  const std::vector<std::string>& hypothesis) {
  MDS_CHECK(!references.empty(), "sentence BLEU: no reference");
  constexpr int kOrders = 4;
  constexpr int64_t kSmoothK = 5;  // SmoothingFunction(k=5)
  int64_t numerator[kOrders], denominator[kOrders];
  for (int n = 1; n <= kOrders; ++n) {
    const NgramCounts counts = count_ngrams(hypothesis, static_cast<std::size_t>(n));
    NgramCounts max_counts;
    for (const auto& reference : references) {
      const NgramCounts ref_counts = count_ngrams(reference, static_cast<std::size_t>(n));
      for (const auto& [ngram, count] : counts) {
        auto it = ref_counts.find(ngram);
        const int64_t c = it == ref_counts.end() ? 0 : it->second;
        int64_t& best = max_counts[ngram];
        best = std::max(best, c);
      }
    }
    int64_t clipped = 0, total = 0;
    for (const auto& [ngram, count] : counts) {
      clipped += std::min(count, max_counts[ngram]);
      total += count;
    }
    numerator[n - 1] = clipped;
    denominator[n - 1] = std::max<int64_t>(1, total);
  }
  if (numerator[0] == 0) return 0.0;  // no matching unigram at all

  // Brevity penalty with the closest reference length (ties: the shorter one).
  const auto hyp_len = static_cast<int64_t>(hypothesis.size());
  int64_t closest = -1;
  for (const auto& reference : references) {
    const auto len = static_cast<int64_t>(reference.size());
    if (closest < 0 || std::llabs(len - hyp_len) < std::llabs(closest - hyp_len) ||
        (std::llabs(len - hyp_len) == std::llabs(closest - hyp_len) && len < closest)) {
      closest = len;
    }
  }
  double bp;
  if (hyp_len > closest) {
    bp = 1.0;
  } else if (hyp_len == 0) {
    bp = 0.0;
  } else {
    bp = std::exp(1.0 - static_cast<double>(closest) / static_cast<double>(hyp_len));
  }

  std::vector<double> terms;
  int64_t incvnt = 1;
  for (int i = 0; i < kOrders; ++i) {
    double p;
    if (numerator[i] != 0) {
      p = static_cast<double>(numerator[i]) /
          static_cast<double>(denominator[i]);  // float(Fraction)
    } else if (hyp_len > 1) {
      const double smoothed = 1.0 / (static_cast<double>((int64_t{1} << incvnt) * kSmoothK) /
                                     std::log(static_cast<double>(hyp_len)));
      p = smoothed / static_cast<double>(denominator[i]);
      ++incvnt;
    } else {
      continue;  // p_n = 0: left out of the sum (NLTK's `if p_i > 0`)
    }
    terms.push_back(0.25 * std::log(p));
  }
  return bp * std::exp(python_fsum(terms));
}

double diffuseq_bleu(const std::string& hypothesis, const std::string& reference) {
  return nltk_sentence_bleu_method4({split_python_whitespace(reference)},
                                    split_python_whitespace(hypothesis));
}

}  // namespace mds
