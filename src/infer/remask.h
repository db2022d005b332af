// Mask-predict rounds after the solver (Ghazvininejad et al. 2019, "Mask-Predict"), on the soft
// absorbing state: the tokens the rounding is least sure of go back to m and are denoised again with
// the others, now decided, as context. A continuous solver moves every position at once and rounds
// each on its own, so two neighbours can settle on pieces that do not make one word ("Onlines" +
// "sources"); a round re-reads such a position beside the word its neighbour became.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace mds::infer {

// The share of an output's tokens that round `round` (1 .. rounds) sends to m: share (R - r + 1) / R,
// Mask-Predict's linear decay (the first round the most, the last share / R).
double remask_share_of_round(double share, int64_t round, int64_t rounds);

// bool [B, T]: in each row, the floor(share * n_b) positions of lowest confidence among its n_b
// eligible ones (ties: the earlier position first). confidence_BT floating, eligible_BT bool.
at::Tensor least_confident(const at::Tensor& confidence_BT, const at::Tensor& eligible_BT, double share);

}  // namespace mds::infer
