// Private to kernels/sliding_attention: the CPU reference of sliding_attention, called by the
// dispatcher in sliding_attention.cpp (and by tests that want the raw forward/backward pair).
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window.
//
// The arguments are already checked and resolved: q/k/v/out/dout contiguous [B, H, L, K] of one
// dtype (float32 or float64), masks contiguous bool [B, L], one dilation per head (each >= 1),
// scale > 0. No autograd here: these are plain functions on plain tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace mds::kernels::detail {

// The resolved SlidingAttentionParams: dilation expanded to one entry per head, scale computed.
struct SlidingBand {
  int64_t window = 0;               // W
  std::vector<int64_t> dilation_H;  // size H
  double scale = 1.0;
};

struct SlidingForwardCpu {
  at::Tensor out_BHLK;  // dtype of q
  at::Tensor lse_BHL;   // float64 log-sum-exp of a row's scaled scores; -inf for a row with no key
};

struct SlidingGradsCpu {
  at::Tensor dq_BHLK, dk_BHLK, dv_BHLK;
};

SlidingForwardCpu sliding_attention_forward_cpu(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK,
                                                const at::Tensor& v_BHLK,
                                                const at::Tensor& key_mask_BL,
                                                const at::Tensor& global_mask_BL,
                                                const SlidingBand& band);

// Recomputes the probabilities from q, k and lse_BHL (no L x L or L x (2W+1) matrix is kept).
SlidingGradsCpu sliding_attention_backward_cpu(
    const at::Tensor& dout_BHLK, const at::Tensor& q_BHLK, const at::Tensor& k_BHLK,
    const at::Tensor& v_BHLK, const at::Tensor& out_BHLK, const at::Tensor& lse_BHL,
    const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL, const SlidingBand& band);

}  // namespace mds::kernels::detail
