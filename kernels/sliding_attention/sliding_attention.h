// Sliding-window attention with dilation and global tokens (Longformer), without an L x L matrix.
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window, G global tokens.
//
// Semantics (docs/math.md, eq. A1-A3): a query i that is not global sees the keys
//   { i + d_h * j : j in [-W, W], 0 <= i + d_h * j < L }  union  { every global key },
// each key once, minus padding keys (key_mask false). A global query sees every non-padding key.
// Scores are scaled by `scale` (default 1/sqrt(K)); the softmax runs in float32 or better.
// A query with no visible key outputs zeros (never NaN). Time and memory are O(L * (2W + 1 + G)).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace mds::kernels {

struct SlidingAttentionParams {
  int64_t window = 256;            // W, one-sided
  std::vector<int64_t> dilation;   // d per head (size H), or one value for all heads; empty = 1
  double scale = 0.0;              // 0 = 1/sqrt(K)
  // Optional facts about the masks that spare the CUDA path a device sync each (< 0 = work it out).
  int64_t max_globals = -1;        // the most global tokens in any row
  int key_padding = -1;            // 0: key_mask is all true; 1: some key is padding
  int empty_rows = -1;             // 0: every row has a key; 1: some row has none
};

// q_BHLK, k_BHLK, v_BHLK: float32 or float64 (also bf16/fp16 on CUDA), same device and dtype.
// key_mask_BL, global_mask_BL: bool. Differentiable in q, k and v. Returns out_BHLK.
// Paths: CPU -> the banded reference loops (custom autograd, banded backward); CUDA bf16/fp16 ->
// FlashAttention-2 with a window on the interleaved sub-sequences plus dense global passes merged
// through the log-sum-exp (sliding_attention_split.h); CUDA float32/float64 -> the dense masked
// specification below (O(L^2): exact, for tests and short sequences).
at::Tensor sliding_attention(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                             const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL,
                             const SlidingAttentionParams& params);

// The specification as a dense boolean mask [B, H, L, L] (true = query may see key), and dense
// masked-softmax attention built from plain torch ops. O(L^2): tests and small references only.
at::Tensor sliding_attention_mask(const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL, int64_t heads,
                                  const SlidingAttentionParams& params);
at::Tensor dense_masked_attention(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                                  const at::Tensor& mask_BHLL, double scale = 0.0);

// Dense attention in which every query sees every non-padding key of its row (attention.type =
// "dense"); a row without any real key gives zeros. `any_padding` = false promises that key_mask_BL
// is all true (MaskFacts::key_padding), so no mask is needed; `any_empty_row` = false that every row
// has a key (MaskFacts::empty_rows), so no row needs its zeros. CUDA bf16/fp16 with LibTorch >= 2.0
// -> scaled_dot_product_attention (a fused kernel: FlashAttention without padding, else the backend
// LibTorch picks for a boolean mask); elsewhere (the CPU, float32 and float64) -> dense_masked_attention,
// its reference. sliding_attention takes this path too when its window covers the row undilated.
at::Tensor dense_padded_attention(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                                  const at::Tensor& key_mask_BL, bool any_padding = true, bool any_empty_row = true);

// Whether dense_padded_attention (and the whole-row case of sliding_attention) runs the fused kernel
// on the GPU (the default) or the masked reference: the benchmarks set it to time both in one run.
void set_fused_dense_attention(bool on);
bool fused_dense_attention();

}  // namespace mds::kernels
