// What the two sliding-attention benchmarks share (sliding_attention_bench: CUDA variants against
// dense SDPA; sliding_attention_memory_bench: the CPU time and memory sweep).
//
// Dimensions: B batch, H heads, L length, K head dim.
#pragma once

#include <ATen/ATen.h>

namespace mds::kernels::bench_detail {

// What a dense model pays: softmax(q k^T * scale) v from torch ops, no mask, an L x L matrix per head.
inline at::Tensor dense_attention(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                                  double scale) {
  const at::Tensor scores_BHLL = at::matmul(q_BHLK * scale, k_BHLK.transpose(-2, -1));
  return at::matmul(at::softmax(scores_BHLL, -1), v_BHLK);
}

}  // namespace mds::kernels::bench_detail
