// CUDA kernels of the split path's global-key pass (see sliding_attention_cuda.h, docs/math.md eq. A5).
//
// One warp per query row: lane l holds elements [l * E, l * E + E) of the row (E = K / 32), so every
// load of a row is one coalesced 64/128/256-byte access, and a dot product is E multiply-adds plus a
// warp reduction. The G global keys are few (BOS and SEP, or a summary's target region): each row
// loops over them with an online softmax. Everything is float32 inside; rows come in and go out bf16.
#include "kernels/sliding_attention/sliding_attention_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace mds::kernels::detail {
namespace {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

__device__ __forceinline__ float load_bf16(const uint16_t* p) {
  return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p));
}

__device__ __forceinline__ void store_bf16(uint16_t* p, float x) {
  *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16(x);
}

// Whether global slot g counts for query i of head h (eq. A1 minus the window: each key once).
__device__ __forceinline__ bool visible(const GlobalKeyArgs& a, int b, int h, int i, int g) {
  if (!a.key_ok[b * a.G + g]) return false;
  const int64_t rel = a.gpos[b * a.G + g] - i;
  const int64_t d = a.dilation[h];
  const bool in_window = (rel < 0 ? -rel : rel) <= static_cast<int64_t>(a.W) * d && rel % d == 0;
  return !in_window;
}

template <int E>
__global__ void global_key_forward_kernel(GlobalKeyArgs a, const uint16_t* out_w, int64_t ow_bh_stride,
                                          int64_t ow_row_stride, const float* lse_w, int64_t lw_bh_stride,
                                          float masked_below, uint16_t* out, float* lse) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t rows = static_cast<int64_t>(a.B) * a.H * a.L;
  if (row >= rows) return;
  const int64_t bh = row / a.L;
  const int i = static_cast<int>(row % a.L), b = static_cast<int>(bh / a.H), h = static_cast<int>(bh % a.H);
  const int K = a.K, c0 = lane * E;

  float q[E], acc[E];
#pragma unroll
  for (int e = 0; e < E; ++e) q[e] = load_bf16(a.q + row * K + c0 + e), acc[e] = 0.f;

  float m = -INFINITY, l = 0.f;
  for (int g = 0; g < a.G; ++g) {
    if (!visible(a, b, h, i, g)) continue;  // the same for the whole warp
    const float* k = a.kg + (bh * a.G + g) * K + c0;
    const float* v = a.vg + (bh * a.G + g) * K + c0;
    float part = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) part += q[e] * k[e];
    const float s = warp_sum(part) * a.scale;
    const float m_new = fmaxf(m, s);
    const float correction = __expf(m - m_new), p = __expf(s - m_new);
    l = l * correction + p;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = acc[e] * correction + p * v[e];
    m = m_new;
  }
  const float lse_g = l > 0.f ? m + __logf(l) : -INFINITY;
  float lw = lse_w[bh * lw_bh_stride + i];
  if (lw < masked_below) lw = -INFINITY;
  const float mx = fmaxf(lw, lse_g);
  const float total = mx == -INFINITY ? -INFINITY : mx + __logf(__expf(lw - mx) + __expf(lse_g - mx));
  const float wa = total == -INFINITY ? 0.f : __expf(lw - total);
  const float wb = (total == -INFINITY || l == 0.f) ? 0.f : __expf(lse_g - total) / l;
  const uint16_t* ow = out_w + bh * ow_bh_stride + static_cast<int64_t>(i) * ow_row_stride + c0;
#pragma unroll
  for (int e = 0; e < E; ++e) store_bf16(out + row * K + c0 + e, wa * load_bf16(ow + e) + wb * acc[e]);
  if (lane == 0) lse[row] = total;
}

template <int E>
__global__ void global_key_backward_kernel(GlobalKeyArgs a, const uint16_t* dout, const uint16_t* out,
                                           const float* lse, const bool* global_BL, const uint16_t* dq_w,
                                           int64_t dqw_bh_stride, int64_t dqw_row_stride, uint16_t* dq,
                                           uint16_t* p_BHLG, uint16_t* ds_BHLG) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t rows = static_cast<int64_t>(a.B) * a.H * a.L;
  if (row >= rows) return;
  const int64_t bh = row / a.L;
  const int i = static_cast<int>(row % a.L), b = static_cast<int>(bh / a.H), h = static_cast<int>(bh % a.H);
  const int K = a.K, c0 = lane * E;

  float acc[E];
  const uint16_t* dqw = dq_w + bh * dqw_bh_stride + static_cast<int64_t>(i) * dqw_row_stride + c0;
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = load_bf16(dqw + e);

  const float lse_i = lse[row];
  const bool skip = global_BL[static_cast<int64_t>(b) * a.L + i] || lse_i == -INFINITY;
  if (!skip) {
    float q[E], dO[E];
    float dot_do = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      q[e] = load_bf16(a.q + row * K + c0 + e);
      dO[e] = load_bf16(dout + row * K + c0 + e);
      dot_do += dO[e] * load_bf16(out + row * K + c0 + e);
    }
    const float D = warp_sum(dot_do);
    for (int g = 0; g < a.G; ++g) {
      float p = 0.f, ds = 0.f;
      if (visible(a, b, h, i, g)) {
        const float* k = a.kg + (bh * a.G + g) * K + c0;
        const float* v = a.vg + (bh * a.G + g) * K + c0;
        float part_s = 0.f, part_dp = 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) part_s += q[e] * k[e], part_dp += dO[e] * v[e];
        const float s = warp_sum(part_s) * a.scale;
        const float dp = warp_sum(part_dp);
        p = __expf(s - lse_i);
        ds = p * (dp - D) * a.scale;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[e] += ds * k[e];
      }
      if (lane == 0) {
        store_bf16(p_BHLG + row * a.G + g, p);
        store_bf16(ds_BHLG + row * a.G + g, ds);
      }
    }
  } else if (lane == 0) {
    for (int g = 0; g < a.G; ++g) store_bf16(p_BHLG + row * a.G + g, 0.f), store_bf16(ds_BHLG + row * a.G + g, 0.f);
  }
#pragma unroll
  for (int e = 0; e < E; ++e) store_bf16(dq + row * K + c0 + e, acc[e]);
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

unsigned blocks_for(const GlobalKeyArgs& a) {
  const int64_t rows = static_cast<int64_t>(a.B) * a.H * a.L;
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

void global_key_forward_cuda(const GlobalKeyArgs& a, const uint16_t* out_w, int64_t ow_bh_stride,
                             int64_t ow_row_stride, const float* lse_w, int64_t lw_bh_stride, float masked_below,
                             uint16_t* out, float* lse, void* stream) {
  if (static_cast<int64_t>(a.B) * a.H * a.L == 0) return;
  const dim3 grid(blocks_for(a)), block(kWarpsPerBlock * 32);
  auto s = static_cast<cudaStream_t>(stream);
  switch (a.K) {
    case 32: global_key_forward_kernel<1><<<grid, block, 0, s>>>(a, out_w, ow_bh_stride, ow_row_stride, lse_w, lw_bh_stride, masked_below, out, lse); break;
    case 64: global_key_forward_kernel<2><<<grid, block, 0, s>>>(a, out_w, ow_bh_stride, ow_row_stride, lse_w, lw_bh_stride, masked_below, out, lse); break;
    case 128: global_key_forward_kernel<4><<<grid, block, 0, s>>>(a, out_w, ow_bh_stride, ow_row_stride, lse_w, lw_bh_stride, masked_below, out, lse); break;
    case 256: global_key_forward_kernel<8><<<grid, block, 0, s>>>(a, out_w, ow_bh_stride, ow_row_stride, lse_w, lw_bh_stride, masked_below, out, lse); break;
    default: throw std::runtime_error("global_key_forward_cuda: head dim must be 32, 64, 128 or 256, got " + std::to_string(a.K));
  }
  check_launch("global_key_forward_cuda");
}

void global_key_backward_cuda(const GlobalKeyArgs& a, const uint16_t* dout, const uint16_t* out, const float* lse,
                              const bool* global_BL, const uint16_t* dq_w, int64_t dqw_bh_stride,
                              int64_t dqw_row_stride, uint16_t* dq, uint16_t* p_BHLG, uint16_t* ds_BHLG,
                              void* stream) {
  if (static_cast<int64_t>(a.B) * a.H * a.L == 0) return;
  const dim3 grid(blocks_for(a)), block(kWarpsPerBlock * 32);
  auto s = static_cast<cudaStream_t>(stream);
  switch (a.K) {
    case 32: global_key_backward_kernel<1><<<grid, block, 0, s>>>(a, dout, out, lse, global_BL, dq_w, dqw_bh_stride, dqw_row_stride, dq, p_BHLG, ds_BHLG); break;
    case 64: global_key_backward_kernel<2><<<grid, block, 0, s>>>(a, dout, out, lse, global_BL, dq_w, dqw_bh_stride, dqw_row_stride, dq, p_BHLG, ds_BHLG); break;
    case 128: global_key_backward_kernel<4><<<grid, block, 0, s>>>(a, dout, out, lse, global_BL, dq_w, dqw_bh_stride, dqw_row_stride, dq, p_BHLG, ds_BHLG); break;
    case 256: global_key_backward_kernel<8><<<grid, block, 0, s>>>(a, dout, out, lse, global_BL, dq_w, dqw_bh_stride, dqw_row_stride, dq, p_BHLG, ds_BHLG); break;
    default: throw std::runtime_error("global_key_backward_cuda: head dim must be 32, 64, 128 or 256, got " + std::to_string(a.K));
  }
  check_launch("global_key_backward_cuda");
}

}  // namespace mds::kernels::detail
