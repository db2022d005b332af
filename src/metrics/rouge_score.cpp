#include "metrics/rouge_score.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "metrics/porter_stemmer.h"
#include "metrics/text.h"

namespace mds::metrics {

namespace {

// scoring.fmeasure
double fmeasure(double precision, double recall) {
  return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

using NgramCounts = std::unordered_map<std::string, int64_t>;

// _create_ngrams; tokens are [a-z0-9]+, so a space joins them unambiguously.
NgramCounts create_ngrams(const std::vector<std::string>& tokens, std::size_t n) {
  NgramCounts counts;
  for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (std::size_t k = 1; k < n; ++k) key.append(" ").append(tokens[i + k]);
    ++counts[key];
  }
  return counts;
}

// _score_ngrams
RougeValue score_ngrams(const NgramCounts& target, const NgramCounts& prediction) {
  int64_t intersection = 0, target_count = 0, prediction_count = 0;
  for (const auto& [ngram, count] : target) {
    auto it = prediction.find(ngram);
    if (it != prediction.end()) intersection += std::min(count, it->second);
    target_count += count;
  }
  for (const auto& kv : prediction) prediction_count += kv.second;
  RougeValue v;
  v.precision = static_cast<double>(intersection) /
                static_cast<double>(std::max<int64_t>(prediction_count, 1));
  v.recall =
      static_cast<double>(intersection) / static_cast<double>(std::max<int64_t>(target_count, 1));
  v.fmeasure = fmeasure(v.precision, v.recall);
  return v;
}

using Table = std::vector<std::vector<std::size_t>>;

// _lcs_table(ref, can)
Table lcs_table(const std::vector<std::string>& ref, const std::vector<std::string>& can) {
  Table t(ref.size() + 1, std::vector<std::size_t>(can.size() + 1, 0));
  for (std::size_t i = 1; i <= ref.size(); ++i) {
    for (std::size_t j = 1; j <= can.size(); ++j) {
      t[i][j] = ref[i - 1] == can[j - 1] ? t[i - 1][j - 1] + 1 : std::max(t[i - 1][j], t[i][j - 1]);
    }
  }
  return t;
}

// _score_lcs
RougeValue score_lcs(const std::vector<std::string>& target,
                     const std::vector<std::string>& prediction) {
  RougeValue v;
  if (target.empty() || prediction.empty()) return v;
  const auto lcs = static_cast<double>(rouge_lcs_length(target, prediction));
  v.precision = lcs / static_cast<double>(prediction.size());
  v.recall = lcs / static_cast<double>(target.size());
  v.fmeasure = fmeasure(v.precision, v.recall);
  return v;
}

// lcs_ind = _backtrack_norec(_lcs_table(ref, can)): indices into ref of one LCS.
std::vector<std::size_t> lcs_indices(const std::vector<std::string>& ref,
                                     const std::vector<std::string>& can) {
  const Table t = lcs_table(ref, can);
  std::size_t i = ref.size(), j = can.size();
  std::vector<std::size_t> out;
  while (i > 0 && j > 0) {
    if (ref[i - 1] == can[j - 1]) {
      out.push_back(i - 1);
      --i;
      --j;
    } else if (t[i][j - 1] > t[i - 1][j]) {
      --j;
    } else {
      --i;
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// _summary_level_lcs
RougeValue summary_level_lcs(const std::vector<std::vector<std::string>>& ref_sents,
                             const std::vector<std::vector<std::string>>& can_sents) {
  RougeValue v;
  if (ref_sents.empty() || can_sents.empty()) return v;
  std::size_t m = 0, n = 0;
  for (const auto& s : ref_sents) m += s.size();
  for (const auto& s : can_sents) n += s.size();
  if (n == 0 || m == 0) return v;
  std::unordered_map<std::string, int64_t> token_cnts_r, token_cnts_c;
  for (const auto& s : ref_sents) {
    for (const auto& t : s) ++token_cnts_r[t];
  }
  for (const auto& s : can_sents) {
    for (const auto& t : s) ++token_cnts_c[t];
  }
  int64_t hits = 0;
  for (const auto& r : ref_sents) {
    std::set<std::size_t> union_lcs;  // _union_lcs: sorted union of the LCS indices into r
    for (const auto& c : can_sents) {
      for (std::size_t idx : lcs_indices(r, c)) union_lcs.insert(idx);
    }
    for (std::size_t idx : union_lcs) {
      const std::string& t = r[idx];
      int64_t& cc = token_cnts_c[t];
      int64_t& cr = token_cnts_r[t];
      if (cc > 0 && cr > 0) {  // clipping: no token counts more often than it occurs
        ++hits;
        --cc;
        --cr;
      }
    }
  }
  v.recall = static_cast<double>(hits) / static_cast<double>(m);
  v.precision = static_cast<double>(hits) / static_cast<double>(n);
  v.fmeasure = fmeasure(v.precision, v.recall);
  return v;
}

// get_sents without split_summaries: text.split("\n"), empty lines dropped.
std::vector<std::string> newline_sentences(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t nl = text.find('\n', start);
    const std::string piece =
        text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (!piece.empty()) out.push_back(piece);
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

}  // namespace

std::vector<std::string> rouge_tokenize(const std::string& text, bool stemmer) {
  // Only what lowercases into [a-z0-9] matters: ASCII, U+212A KELVIN SIGN -> 'k', and U+0130 ->
  // "i\u0307" (its dot is a separator). Everything else separates.
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&] {
    if (!current.empty())
      tokens.push_back(stemmer && current.size() > 3 ? porter_stem(current) : current);
    current.clear();
  };
  for (char32_t c : utf8_to_u32(text)) {
    if (c >= U'A' && c <= U'Z') {
      current.push_back(static_cast<char>(c - U'A' + U'a'));
    } else if ((c >= U'a' && c <= U'z') || (c >= U'0' && c <= U'9')) {
      current.push_back(static_cast<char>(c));
    } else if (c == 0x212A) {
      current.push_back('k');
    } else if (c == 0x130) {
      current.push_back('i');
      flush();
    } else {
      flush();
    }
  }
  flush();
  // The final VALID_TOKEN_RE filter: the stemmer never empties a token longer than 3.
  tokens.erase(
      std::remove_if(tokens.begin(), tokens.end(), [](const std::string& t) { return t.empty(); }),
      tokens.end());
  return tokens;
}

std::size_t rouge_lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::size_t> row(b.size() + 1, 0), next(b.size() + 1, 0);
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (std::size_t j = 0; j < b.size(); ++j) {
      next[j + 1] = a[i] == b[j] ? row[j] + 1 : std::max(row[j + 1], next[j]);
    }
    std::swap(row, next);
  }
  return row[b.size()];
}

RougeScores rouge_score(const std::string& target, const std::string& prediction, bool stemmer) {
  const std::vector<std::string> t = rouge_tokenize(target, stemmer);
  const std::vector<std::string> p = rouge_tokenize(prediction, stemmer);
  RougeScores s;
  s.rouge1 = score_ngrams(create_ngrams(t, 1), create_ngrams(p, 1));
  s.rouge2 = score_ngrams(create_ngrams(t, 2), create_ngrams(p, 2));
  s.rougeL = score_lcs(t, p);
  std::vector<std::vector<std::string>> t_sents, p_sents;
  for (const auto& sent : newline_sentences(target))
    t_sents.push_back(rouge_tokenize(sent, stemmer));
  for (const auto& sent : newline_sentences(prediction))
    p_sents.push_back(rouge_tokenize(sent, stemmer));
  s.rougeLsum = summary_level_lcs(t_sents, p_sents);
  return s;
}

RougeScores rouge_score_multi(const std::vector<std::string>& targets,
                              const std::string& prediction, bool stemmer) {
  MDS_CHECK(!targets.empty(), "ROUGE: no reference");
  std::vector<RougeScores> all;
  for (const auto& t : targets) all.push_back(rouge_score(t, prediction, stemmer));
  // np.argmax over the F-measures: the first maximum.
  auto best = [&](RougeValue RougeScores::*field) {
    std::size_t idx = 0;
    for (std::size_t i = 1; i < all.size(); ++i) {
      if ((all[i].*field).fmeasure > (all[idx].*field).fmeasure) idx = i;
    }
    return all[idx].*field;
  };
  RougeScores s;
  s.rouge1 = best(&RougeScores::rouge1);
  s.rouge2 = best(&RougeScores::rouge2);
  s.rougeL = best(&RougeScores::rougeL);
  s.rougeLsum = best(&RougeScores::rougeLsum);
  return s;
}

}  // namespace mds::metrics
