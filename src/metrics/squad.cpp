#include "metrics/squad.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

#include "core/error.h"
#include "metrics/text.h"

namespace mds::metrics {

namespace {

// string.punctuation
bool is_ascii_punct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

// re's Unicode \w: str.isalnum() or '_'.
bool is_word_char(char32_t c) { return c == U'_' || is_python_alnum(c); }

bool is_article(std::u32string_view w) { return w == U"a" || w == U"an" || w == U"the"; }

double f1_score(const std::string& prediction, const std::string& ground_truth) {
  const std::vector<std::string> pred = python_split(squad_normalize(prediction));
  const std::vector<std::string> truth = python_split(squad_normalize(ground_truth));
  std::unordered_map<std::string, int64_t> pred_counts, truth_counts;
  for (const auto& t : pred) ++pred_counts[t];
  for (const auto& t : truth) ++truth_counts[t];
  int64_t num_same = 0;
  for (const auto& [token, count] : pred_counts) {
    auto it = truth_counts.find(token);
    if (it != truth_counts.end()) num_same += std::min(count, it->second);
  }
  if (num_same == 0) return 0.0;
  const double precision = 1.0 * static_cast<double>(num_same) / static_cast<double>(pred.size());
  const double recall = 1.0 * static_cast<double>(num_same) / static_cast<double>(truth.size());
  return (2 * precision * recall) / (precision + recall);
}

}  // namespace

std::string squad_normalize(const std::string& text) {
  const std::u32string lowered = python_lower(utf8_to_u32(text));
  std::u32string no_punct;
  for (char32_t c : lowered) {
    if (!is_ascii_punct(c)) no_punct.push_back(c);
  }
  // re.sub(r'\b(a|an|the)\b', ' ', text) replaces exactly the maximal word-character runs that
  // are "a", "an" or "the".
  std::u32string no_articles;
  for (std::size_t i = 0; i < no_punct.size();) {
    if (!is_word_char(no_punct[i])) {
      no_articles.push_back(no_punct[i++]);
      continue;
    }
    std::size_t j = i;
    while (j < no_punct.size() && is_word_char(no_punct[j])) ++j;
    const std::u32string_view word(no_punct.data() + i, j - i);
    if (is_article(word)) {
      no_articles.push_back(U' ');
    } else {
      no_articles.append(word);
    }
    i = j;
  }
  std::u32string out;
  for (const std::u32string& w : python_split(std::u32string_view(no_articles))) {
    if (!out.empty()) out.push_back(U' ');
    out += w;
  }
  return u32_to_utf8(out);
}

bool squad_exact_match(const std::string& prediction,
                       const std::vector<std::string>& ground_truths) {
  MDS_CHECK(!ground_truths.empty(), "SQuAD: no ground truth");
  const std::string pred = squad_normalize(prediction);
  for (const auto& truth : ground_truths) {
    if (pred == squad_normalize(truth)) return true;
  }
  return false;
}

double squad_f1(const std::string& prediction, const std::vector<std::string>& ground_truths) {
  MDS_CHECK(!ground_truths.empty(), "SQuAD: no ground truth");
  double best = 0.0;
  for (std::size_t i = 0; i < ground_truths.size(); ++i) {
    const double f = f1_score(prediction, ground_truths[i]);
    if (i == 0 || f > best) best = f;
  }
  return best;
}

SquadCorpus squad_evaluate(const std::vector<std::string>& predictions,
                           const std::vector<std::vector<std::string>>& ground_truths) {
  MDS_CHECK(predictions.size() == ground_truths.size(), "SQuAD: ", predictions.size(),
            " predictions but ", ground_truths.size(), " answer lists");
  MDS_CHECK(!predictions.empty(), "SQuAD: no predictions");
  int64_t exact = 0;
  double f1 = 0.0;  // Python's `f1 += ...`, in order
  for (std::size_t i = 0; i < predictions.size(); ++i) {
    exact += squad_exact_match(predictions[i], ground_truths[i]) ? 1 : 0;
    f1 += squad_f1(predictions[i], ground_truths[i]);
  }
  const auto total = static_cast<double>(predictions.size());
  return {100.0 * static_cast<double>(exact) / total, 100.0 * f1 / total};
}

}  // namespace mds::metrics
