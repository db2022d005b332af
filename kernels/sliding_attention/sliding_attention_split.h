// Private to kernels/sliding_attention: the fast path of sliding_attention, split into
//   1. a window pass on a plain (undilated, unmasked) windowed attention kernel: FlashAttention-2
//      with a window on CUDA, the banded CPU reference elsewhere (so that CI tests this file);
//   2. a small dense pass for the global keys (every query x G keys) and one for the global queries
//      (G queries x every key), in float32;
// merged through the log-sum-exp (docs/math.md eq. A5).
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window, G global tokens, d dilation.
//
// Dilation costs nothing: with L a multiple of d, a contiguous [B, H, L, K] tensor viewed as
// [B*H, L/d, d, K] holds the d interleaved sub-sequences i = j*d + r as d "heads" of length L/d, and
// a dilated window over the sequence is a plain window over each sub-sequence. Padding keys (and the
// positions added to round L up to a multiple of d) are masked by one extra head-dim column: q gets 1
// there, a padding key -P/scale, so its scaled score drops by P = 2e4 (exp underflows to 0).
//
// The backward pass calls the window kernel's backward with the MERGED output and log-sum-exp: for
// attention split into parts, dS_part = P_part (dP_part - rowsum(dO . O)) with P_part = exp(S_part -
// lse), so each part's gradient needs only the final O and lse (as in ring attention).
#pragma once

#include <ATen/core/Tensor.h>

#include "kernels/sliding_attention/sliding_attention_cpu.h"

namespace mds::kernels::detail {

// Hints that spare a device sync each (computed from the masks when absent, i.e. < 0).
struct SplitHints {
  int64_t max_globals = -1;  // G: the most global tokens in a row
  int key_padding = -1;      // 0: key_mask is all true, 1: it is not
};

// Whether the split path can take q (CUDA: bf16/fp16, head dim a multiple of 8 up to 256, a LibTorch
// with windowed flash attention; CPU: float32/float64).
bool split_path_supported(const at::Tensor& q_BHLK);

// Differentiable in q, k and v. Inputs checked by the caller: contiguous [B, H, L, K], bool masks [B, L].
at::Tensor sliding_attention_split(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                                   const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL,
                                   const SlidingBand& band, const SplitHints& hints = {});

}  // namespace mds::kernels::detail
