// Private to kernels/moe: the input checks shared by every entry point, the capacity rule without its
// checks, and the sorted dispatch built from ATen ops (the CPU path, and CUDA where moe_grouped.h's
// grouped kernel does not apply).
//
// Dimensions: N tokens, D model dim, E experts, A = k active experts per token, F expert hidden,
// M = N * A (token, slot) pairs.
#pragma once

#include "kernels/moe/moe.h"

namespace mds::kernels::detail {

// Throws mds::Error naming the tensor and its shape when an argument breaks the moe_ffn contract:
// x_ND [N, D] floating; w1 [E, D, F], b1 [E, F], w2 [E, F, D], b2 [E, D] with x's dtype; expert_NA
// int64 [N, A] with values in [0, E); weight_NA [N, A] floating; everything on x's device.
void check_moe_inputs(const char* fn, const at::Tensor& x_ND, const ExpertWeights& experts,
                      const at::Tensor& expert_NA, const at::Tensor& weight_NA);

// expert_NA int64 [N, A] with values in [0, num_experts). On CUDA the range check is an asynchronous
// device assertion (no host sync): a bad id fails the next synchronising call, without the ids.
void check_expert_ids(const char* fn, const at::Tensor& expert_NA, int64_t num_experts);

// capacity_keep_mask on ids already checked.
at::Tensor capacity_keep_mask_unchecked(const at::Tensor& expert_NA, int64_t num_experts,
                                        int64_t capacity);

// Pair keys for a stable sort by expert: the expert id, or num_experts for a dropped pair. One byte
// when the ids fit (a one-pass radix sort on CUDA), int64 otherwise.
at::ScalarType sort_key_dtype(int64_t num_experts);

// Sort-by-expert dispatch (docs/math.md eq. M4) from differentiable ATen ops; inputs already
// checked.
at::Tensor moe_ffn_sorted(const at::Tensor& x_ND, const ExpertWeights& experts,
                          const at::Tensor& expert_NA, const at::Tensor& weight_NA,
                          int64_t capacity, MoeDispatchStats* stats);

}  // namespace mds::kernels::detail
