// Mixture-of-experts feed-forward: dispatch of routed tokens to expert FFNs and back.
//
// Dimensions: N tokens, D model dim, E experts, A = k active experts per token, F expert hidden.
//
// y_n = sum_a weight_NA[n, a] * FFN_{expert_NA[n, a]}(x_n),  FFN_e(x) = W2_e gelu(W1_e x + b1_e) + b2_e
//
// Every path sorts the N*A (token, slot) pairs by expert, multiplies each expert's contiguous slice by
// its weights, and sums back with the router weights (docs/math.md, eq. M4):
//  - CUDA with bfloat16 expert products (autocast, LibTorch >= 2.8): moe_grouped.cpp. Both expert
//    products are one grouped GEMM each (at::_grouped_mm); permutation, group offsets, capacity and
//    the statistics stay on the device: no host sync.
//  - Otherwise (CPU; float32 on CUDA, where LibTorch has no grouped kernel): moe_cpu.cpp, one addmm per
//    expert over its slice (one small host copy of the counts).
// The reference is a per-token loop over the token's experts. With a capacity (>= 0), an expert keeps
// at most `capacity` assignments: in token order, every top-1 choice before any top-2 choice (GShard
// priority); the rest are dropped (weight 0: the token gets only the residual) and counted.
//
// Mixed precision: with autocast on for x's device and x float32, the grouped path computes the expert
// products in the autocast dtype (weights cast from the float32 masters, gradients flow back to them)
// and returns y in that dtype, as an autocast matmul would; the loop leaves the casts to autocast.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace mds::kernels {

struct ExpertWeights {
  at::Tensor w1_EDF, b1_EF, w2_EFD, b2_ED;
};

// Device tensors, so that collecting them costs no host sync; call .item() only where a number is
// needed on the host (logging).
struct MoeDispatchStats {
  at::Tensor tokens_per_expert_E;  // int64 [E] on x's device: assignments each expert kept
  at::Tensor dropped;              // int64 0-dim on x's device: assignments dropped by the capacity
};

// x_ND float; expert_NA int64 in [0, E); weight_NA float. capacity < 0 = dropless.
// Differentiable in x, the weights and weight_NA (gradients reach the router through weight_NA).
at::Tensor moe_ffn(const at::Tensor& x_ND, const ExpertWeights& experts, const at::Tensor& expert_NA,
                   const at::Tensor& weight_NA, int64_t capacity, MoeDispatchStats* stats = nullptr);

// The per-token loop, same contract: the specification moe_ffn is tested against.
at::Tensor moe_ffn_reference(const at::Tensor& x_ND, const ExpertWeights& experts, const at::Tensor& expert_NA,
                             const at::Tensor& weight_NA, int64_t capacity, MoeDispatchStats* stats = nullptr);

// Which assignments survive a capacity: bool [N, A] (all true when capacity < 0).
at::Tensor capacity_keep_mask(const at::Tensor& expert_NA, int64_t num_experts, int64_t capacity);

}  // namespace mds::kernels
