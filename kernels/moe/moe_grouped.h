// Private to kernels/moe: the grouped-GEMM dispatch (the CUDA path; it runs on any device, which is how
// CI tests it on the CPU).
//
// Dimensions: N tokens, D model dim, E experts, A = k active experts per token, F expert hidden,
// M = N * A (token, slot) pairs.
#pragma once

#include "kernels/moe/moe.h"

namespace mds::kernels::detail {

// moe_ffn's contract, inputs already checked. One stable sort of the pairs by expert (dropped pairs
// last), then both expert products as one grouped GEMM each over the sorted rows, then the weighted
// sum back per token; offsets, capacity and statistics stay on the device, with no host sync where
// group_gemm takes the grouped kernel (CUDA, bfloat16: under autocast). Under autocast (x float32)
// the products run in the autocast dtype and y comes back in it.
at::Tensor moe_ffn_grouped(const at::Tensor& x_ND, const ExpertWeights& experts,
                           const at::Tensor& expert_NA, const at::Tensor& weight_NA,
                           int64_t capacity, MoeDispatchStats* stats);

// The dtype moe_ffn_grouped computes the expert products in: autocast's for float32 x under autocast
// on x's device, else x's.
at::ScalarType expert_compute_dtype(const at::Tensor& x_ND);

// Whether moe_ffn_grouped would run both expert products on LibTorch's grouped kernel for x (CUDA,
// a LibTorch that has it, bfloat16 products): the case where it beats the per-expert loop.
bool grouped_kernel_applies(const at::Tensor& x_ND);

// out[rows of group g] = a[rows of group g] @ b[g]: a [M, K], b [G, K, Nout], offs int32 [G] on a's
// device, the cumulative row ends (group g is rows offs[g-1] .. offs[g]-1). Rows at or past offs[G-1]
// are unspecified. at::_grouped_mm where LibTorch has it and it takes these tensors (CUDA, bfloat16,
// rows aligned to 16 bytes); otherwise one mm per group, with the offsets copied to the host (and NaN
// in the unspecified rows). Differentiable in a and b.
at::Tensor group_gemm(const at::Tensor& a_MK, const at::Tensor& b_GKN, const at::Tensor& offs_G);

// Whether group_gemm takes LibTorch's grouped kernel for these operands (no host sync).
bool group_gemm_is_grouped(const at::Tensor& a_MK, const at::Tensor& b_GKN);

}  // namespace mds::kernels::detail
