// Softmax top-k router with the load-balancing and z auxiliary losses.
//
// Dimensions: N tokens, E experts, A = k experts per token.
//
// Everything is computed in float32 (logits are cast first), whatever the model's dtype.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace mds::model {

struct RouterOutput {
  at::Tensor logits_NE;  // float32, the router logits as routed
  at::Tensor probs_NE;   // float32 softmax over experts (docs/math.md eq. M1)
  at::Tensor expert_NA;  // int64, top-k experts per token, most probable first
  at::Tensor weight_NA;  // float32, their probabilities (renormalised to sum 1 per token if asked)
  at::Tensor aux_loss;  // float32 scalar, load balancing (eq. M2), unweighted: 1 at uniform routing
  at::Tensor z_loss;    // float32 scalar, router z-loss (eq. M3), unweighted
};

// logits_NE [N, E], any floating dtype; 1 <= top_k <= E. Differentiable in logits_NE through
// weight_NA, aux_loss (via the mean probabilities) and z_loss. N = 0 gives zero losses.
RouterOutput route(const at::Tensor& logits_NE, int64_t top_k, bool renormalize);

}  // namespace mds::model
