// Private to the split path of sliding_attention (sliding_attention_split.cpp, and
// sliding_attention_split_cuda.cpp in CUDA builds): what the forward plans once and the backward
// repeats, and the CUDA global passes.
//
// Dimensions: B batch, H heads, L length, K head dim, G global tokens, Lp = L rounded up to a multiple
// of every dilation, Kp = head dim with the masking column, rounded up to a multiple of 8.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/torch_compat.h"
#include "kernels/sliding_attention/sliding_attention_cpu.h"

namespace mds::kernels::detail {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Scaled-score penalty of a masked key in the window pass: exp(-2e4) is 0 even in float32, and a
// row whose window held only masked keys has lse < -kPenalty / 2 (a real score never gets there).
constexpr double kPenalty = 2.0e4;

// A small host vector on `device` without a device sync: a blocking host-to-device copy would wait
// for every kernel queued before it (pageable memory is staged at once, so non_blocking is safe).
// On a GPU each distinct vector is copied once and kept (they are a model's dilations and head
// groups): a copy from the host cannot be part of a CUDA graph, and the sampler captures the model.
// Callers never write to the result.
template <typename T>
at::Tensor small_tensor(const std::vector<T>& values, at::ScalarType dtype, const at::Device& device) {
  if (device.is_cpu()) return at::tensor(values, at::TensorOptions().dtype(dtype));
  static std::mutex mutex;
  static std::map<std::tuple<std::vector<int64_t>, int, int, int>, at::Tensor> kept;
  std::vector<int64_t> key_values(values.begin(), values.end());
  const auto key = std::make_tuple(std::move(key_values), static_cast<int>(dtype), static_cast<int>(device.type()),
                                   static_cast<int>(device.index()));
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = kept.find(key);
  if (it == kept.end())
    it = kept.emplace(key, at::tensor(values, at::TensorOptions().dtype(dtype)).to(device, /*non_blocking=*/true)).first;
  return it->second;
}

// What the forward decides once and the backward repeats: shapes, head groups, global slots.
struct Plan {
  int64_t B = 0, H = 0, L = 0, K = 0, Lp = 0, Kp = 0, G = 0;
  bool masked = false;  // window pass needs the masking column (padding keys or L < Lp)
  std::map<int64_t, std::vector<int64_t>> heads_by_dilation;
  at::ScalarType stat = at::kFloat;  // softmax statistics and the global passes
};

struct Globals {
  at::Tensor index_BG;     // positions of the global tokens, first G per row (padded with others)
  at::Tensor query_BG;     // slot holds a global token
  at::Tensor key_BG;       // ... that is also a visible (non-padding) key
};

struct Forward {
  at::Tensor out_BHLK;  // input dtype
  at::Tensor lse_BHL;   // stat dtype, -inf where a row sees no key
};

// Every head's index of the global slots, [B, H, G, K], for gather and scatter.
at::Tensor index_BHGK(const Globals& g, int64_t H, int64_t K);

#ifdef MDS_WITH_CUDA
// bf16 on CUDA with a head dim the kernels know: the global-key pass runs fused
// (sliding_attention_cuda.cu) and the global-query pass on FlashAttention over every key. Elsewhere
// the ATen code of sliding_attention_split.cpp does both in float32 (the CPU reference of the kernels).
bool global_kernels_apply(const Plan& p, const at::Tensor& q);

// The global passes of the forward on top of the window pass's (extended) out_w and lse_w.
Forward global_forward_cuda(const Plan& p, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& qx, const at::Tensor& kx, const at::Tensor& vx, const at::Tensor& out_w,
                            const at::Tensor& lse_w, const Globals& g, const SlidingBand& band,
                            std::vector<compat::FlashForward>* flash);

// Their backward: adds the global terms to the window pass's gradients dq_x, dk_x, dv_x.
std::vector<at::Tensor> global_backward_cuda(const Plan& p, const at::Tensor& dout, const at::Tensor& q,
                                             const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                                             const at::Tensor& lse, const at::Tensor& global_mask_BL,
                                             const at::Tensor& qx, const at::Tensor& kx, const at::Tensor& vx,
                                             const at::Tensor& dq_x, const at::Tensor& dk_x, const at::Tensor& dv_x,
                                             const Globals& g, const SlidingBand& band,
                                             const compat::FlashForward& flash_rows);
#endif

}  // namespace mds::kernels::detail
