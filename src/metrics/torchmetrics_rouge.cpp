#include "metrics/torchmetrics_rouge.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

#include "core/error.h"
#include "metrics/pysum.h"
#include "metrics/rouge_score.h"

namespace mds::metrics {

namespace {

struct Prf {
  float precision = 0, recall = 0, fmeasure = 0;
};

// _compute_metrics: Python doubles, each turned into a float32 tensor.
Prf compute_metrics(int64_t hits, int64_t pred_len, int64_t target_len) {
  const double precision = static_cast<double>(hits) / static_cast<double>(pred_len);
  const double recall = static_cast<double>(hits) / static_cast<double>(target_len);
  Prf out;
  if (precision == 0.0 && recall == 0.0) return out;
  const double f = 2 * precision * recall / (precision + recall);
  out.precision = static_cast<float>(precision);
  out.recall = static_cast<float>(recall);
  out.fmeasure = static_cast<float>(f);
  return out;
}

// _rouge_n_score
Prf rouge_n(const std::vector<std::string>& pred, const std::vector<std::string>& target,
            std::size_t n) {
  auto ngrams = [n](const std::vector<std::string>& tokens) {
    std::unordered_map<std::string, int64_t> counts;
    for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
      std::string key = tokens[i];
      for (std::size_t k = 1; k < n; ++k) key.append(" ").append(tokens[i + k]);
      ++counts[key];
    }
    return counts;
  };
  const auto p = ngrams(pred), t = ngrams(target);
  int64_t pred_len = 0, target_len = 0, hits = 0;
  for (const auto& kv : p) pred_len += kv.second;
  for (const auto& kv : t) target_len += kv.second;
  if (pred_len == 0 || target_len == 0) return {};
  for (const auto& [ngram, count] : p) {
    auto it = t.find(ngram);
    if (it != t.end()) hits += std::min(count, it->second);
  }
  return compute_metrics(hits, pred_len, target_len);
}

// _rouge_l_score
Prf rouge_l(const std::vector<std::string>& pred, const std::vector<std::string>& target) {
  if (pred.empty() || target.empty()) return {};
  const auto lcs = static_cast<int64_t>(rouge_lcs_length(pred, target));
  return compute_metrics(lcs, static_cast<int64_t>(pred.size()),
                         static_cast<int64_t>(target.size()));
}

}  // namespace

TorchmetricsRouge torchmetrics_rouge(const std::string& prediction,
                                     const std::vector<std::string>& targets) {
  MDS_CHECK(!targets.empty(), "ROUGE: no reference");
  const std::vector<std::string> pred = rouge_tokenize(prediction, false);
  Prf r1, r2, rl;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const std::vector<std::string> target = rouge_tokenize(targets[i], false);
    // Per key, torch.argmax over the float32 F-measures: the first maximum.
    const Prf c1 = rouge_n(pred, target, 1), c2 = rouge_n(pred, target, 2),
              cl = rouge_l(pred, target);
    if (i == 0 || c1.fmeasure > r1.fmeasure) r1 = c1;
    if (i == 0 || c2.fmeasure > r2.fmeasure) r2 = c2;
    if (i == 0 || cl.fmeasure > rl.fmeasure) rl = cl;
  }
  return {r1.fmeasure, r1.precision, r1.recall,    r2.fmeasure, r2.precision,
          r2.recall,   rl.fmeasure,  rl.precision, rl.recall};
}

TorchmetricsRouge torchmetrics_rouge_corpus(const std::vector<std::string>& predictions,
                                            const std::vector<std::vector<std::string>>& targets) {
  MDS_CHECK(predictions.size() == targets.size(), "ROUGE: ", predictions.size(),
            " predictions but ", targets.size(), " reference lists");
  MDS_CHECK(!predictions.empty(), "ROUGE: no predictions");
  std::vector<float> columns[9];
  for (std::size_t i = 0; i < predictions.size(); ++i) {
    const TorchmetricsRouge r = torchmetrics_rouge(predictions[i], targets[i]);
    const float v[9] = {r.rouge1_fmeasure, r.rouge1_precision, r.rouge1_recall,
                        r.rouge2_fmeasure, r.rouge2_precision, r.rouge2_recall,
                        r.rougeL_fmeasure, r.rougeL_precision, r.rougeL_recall};
    for (int k = 0; k < 9; ++k) columns[k].push_back(v[k]);
  }
  auto mean = [&](int k) { return torch_cpu_mean(columns[k]); };
  return {mean(0), mean(1), mean(2), mean(3), mean(4), mean(5), mean(6), mean(7), mean(8)};
}

}  // namespace mds::metrics
