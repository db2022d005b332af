// Private to kernels/sliding_attention: CUDA kernels of the split path's global-key pass (fused,
// reading bf16 directly). Their CPU reference is the ATen code of the same pass in
// sliding_attention_split.cpp, and the GPU tests compare the whole split path with the CPU kernel.
//
// Dimensions: B batch, H heads, L length, K head dim (32, 64, 128 or 256), G global slots, W one-sided
// window; BH = B * H. Row r of a [BH, L, K] operand starts at base + bh * bh_stride + i * row_stride.
// All pointers are device pointers; bf16 is passed as uint16_t so this header needs no CUDA types.
#pragma once

#include <cstdint>

namespace mds::kernels::detail {

struct GlobalKeyArgs {
  int B = 0, H = 0, L = 0, K = 0, G = 0, W = 0;
  float scale = 1.f;
  const uint16_t* q = nullptr;     // [BH, L, K] contiguous
  const float* kg = nullptr;       // [BH, G, K] contiguous: the global keys (float32)
  const float* vg = nullptr;       // [BH, G, K] contiguous: their values
  const int64_t* gpos = nullptr;   // [B, G] positions of the global slots
  const bool* key_ok = nullptr;    // [B, G] slot is a real, non-padding global key
  const int* dilation = nullptr;   // [H]
};

// out = merge(window result, softmax over the global keys outside each query's window), eq. A5.
// lse_w below `masked_below` counts as -inf (a window that held only masked keys).
void global_key_forward_cuda(const GlobalKeyArgs& a, const uint16_t* out_w, int64_t ow_bh_stride,
                             int64_t ow_row_stride, const float* lse_w, int64_t lw_bh_stride, float masked_below,
                             uint16_t* out, float* lse, void* stream);

// Backward of the global-key part with the merged out/lse: dq = dq_w + scale * sum_g ds_g kg[g]; writes the
// probabilities p and scale * ds per (row, slot) so that dk_g = ds^T q and dv_g = p^T dO are two GEMMs.
// Rows that are global queries (global_BL) or saw no key (lse = -inf) only copy dq_w.
void global_key_backward_cuda(const GlobalKeyArgs& a, const uint16_t* dout, const uint16_t* out, const float* lse,
                              const bool* global_BL, const uint16_t* dq_w, int64_t dqw_bh_stride,
                              int64_t dqw_row_stride, uint16_t* dq, uint16_t* p_BHLG, uint16_t* ds_BHLG,
                              void* stream);

}  // namespace mds::kernels::detail
