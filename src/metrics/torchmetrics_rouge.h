// torchmetrics 1.9.0 ROUGEScore(rouge_keys=("rouge1","rouge2","rougeL")) with its defaults
// (use_stemmer=False, accumulate="best"), whose values are float32 tensors. DiffuSeq's ROUGE-L
// is this class's rougeL_fmeasure against one reference.
#pragma once

#include <string>
#include <vector>

namespace mds::metrics {

struct TorchmetricsRouge {
  float rouge1_fmeasure = 0, rouge1_precision = 0, rouge1_recall = 0;
  float rouge2_fmeasure = 0, rouge2_precision = 0, rouge2_recall = 0;
  float rougeL_fmeasure = 0, rougeL_precision = 0, rougeL_recall = 0;
};

// One prediction against its references: each score is a double rounded to float32. With several
// references, accumulate="best" takes, for each key separately, the reference with the best
// float32 F-measure (the first on a tie). (Older torchmetrics used the rouge1 winner for every
// key; the 1.9.0 reference values show the per-key choice.)
TorchmetricsRouge torchmetrics_rouge(const std::string& prediction,
                                     const std::vector<std::string>& targets);

// update(preds, targets) then compute(): the float32 mean over items of each item's value, summed
// in torch's CPU order (metrics/pysum.h: torch_cpu_mean, AVX2 kernels).
TorchmetricsRouge torchmetrics_rouge_corpus(const std::vector<std::string>& predictions,
                                            const std::vector<std::vector<std::string>>& targets);

}  // namespace mds::metrics
