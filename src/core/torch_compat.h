// The one place that knows which LibTorch it is built against: Debian's 1.13 (CPU, CI) or the 2.x
// of the GPU machine. Code elsewhere uses these names instead of testing versions itself.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <torch/version.h>

#include <cstdint>
#include <tuple>
#include <vector>

#define MDS_TORCH_VERSION (TORCH_VERSION_MAJOR * 100 + TORCH_VERSION_MINOR)

// LibTorch >= 2.0 exposes scaled_dot_product_attention with a per-call scale.
#define MDS_TORCH_HAS_SDPA (MDS_TORCH_VERSION >= 200)
// FlashAttention-2 with a sliding window (window_size_left/right) as an ATen op: 2.6 and later.
#define MDS_TORCH_HAS_FLASH_WINDOW (MDS_TORCH_VERSION >= 206)
// at::_grouped_mm (2D x 3D with int32 group offsets, differentiable): 2.8 and later.
#define MDS_TORCH_HAS_GROUPED_MM (MDS_TORCH_VERSION >= 208)
// at::_fused_adamw_ (CUDA, found_inf) and the _foreach_ ops that take a 0-dim tensor as their scalar
// (_foreach_mul_(list, Tensor)) and _foreach_norm: 2.1 and later (the optimizer's device path).
#define MDS_TORCH_HAS_FUSED_ADAMW (MDS_TORCH_VERSION >= 201)
// c10d: Gloo and NCCL process groups derive from c10d::Backend from 2.0 on, from c10d::ProcessGroup
// before (src/runtime/distributed.cpp holds one of either).
#define MDS_TORCH_C10D_BACKEND (MDS_TORCH_VERSION >= 200)

namespace mds::compat {

// ---------------------------------------------------------------------------- autocast

// Whether autocast is on for `device` in this thread.
inline bool autocast_enabled(c10::DeviceType device) {
#if MDS_TORCH_VERSION >= 204
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}

inline at::ScalarType autocast_dtype(c10::DeviceType device) {
#if MDS_TORCH_VERSION >= 204
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                        : at::autocast::get_autocast_gpu_dtype();
#endif
}

inline void set_autocast(c10::DeviceType device, bool enabled, at::ScalarType dtype) {
#if MDS_TORCH_VERSION >= 204
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::DeviceType::CPU) {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
#endif
}

// RAII: autocast to `dtype` on `device` (enabled = false turns it off) for the scope, then the
// previous state; the cast cache is cleared when the outermost scope ends, as torch.autocast does.
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType device, bool enabled, at::ScalarType dtype = at::kBFloat16)
      : device_(device), was_enabled_(autocast_enabled(device)), was_dtype_(autocast_dtype(device)) {
    set_autocast(device_, enabled, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set_autocast(device_, was_enabled_, was_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType device_;
  bool was_enabled_;
  at::ScalarType was_dtype_;
};

// RAII: no autocast on the device of `t` for the scope (fp32 islands: router, softmax statistics).
class NoAutocast {
 public:
  explicit NoAutocast(const at::Tensor& t) : scope_(t.device().type(), false, autocast_dtype(t.device().type())) {}

 private:
  AutocastScope scope_;
};

// ---------------------------------------------------------------------------- flash attention

struct FlashForward {
  at::Tensor out_NLHK;   // same layout as q
  at::Tensor lse_NHL;    // float32
  at::Tensor rng_state, unused;
};

// FlashAttention-2 on q [N, Lq, H, K] and k, v [N, Lk, H, K] (stride(-1) == 1, fp16 or bf16, CUDA): with
// window >= 0 query i sees the keys j with |i - j| <= window (Lq == Lk), with window < 0 every key.
// Throws where LibTorch has no such op.
inline FlashForward flash_window_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         double scale, int64_t window) {
#if MDS_TORCH_HAS_FLASH_WINDOW
  const c10::optional<int64_t> w = window >= 0 ? c10::optional<int64_t>(window) : c10::nullopt;
  auto r = at::_flash_attention_forward(q, k, v, c10::nullopt, c10::nullopt, q.size(1), k.size(1), 0.0,
                                        /*is_causal=*/false, /*return_debug_mask=*/false, scale, w, w);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r), std::get<3>(r)};
#else
  (void)k, (void)v, (void)scale, (void)window;
  TORCH_CHECK(false, "flash attention with a window needs LibTorch >= 2.6; this build has ", TORCH_VERSION,
              " (tensors on ", q.device(), ")");
#endif
}

// Gradients of that attention given the output and log-sum-exp to use in the backward pass (which may
// be those of a larger attention that this one is part of, merged through the LSE).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> flash_window_backward(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, const FlashForward& fwd, double scale, int64_t window) {
#if MDS_TORCH_HAS_FLASH_WINDOW
  const c10::optional<int64_t> w = window >= 0 ? c10::optional<int64_t>(window) : c10::nullopt;
  return at::_flash_attention_backward(dout, q, k, v, out, lse, at::Tensor(), at::Tensor(), q.size(1), k.size(1),
                                       0.0, /*is_causal=*/false, fwd.rng_state, fwd.unused, scale, w, w);
#else
  (void)dout, (void)k, (void)v, (void)out, (void)lse, (void)fwd, (void)scale, (void)window;
  TORCH_CHECK(false, "flash attention with a window needs LibTorch >= 2.6; this build has ", TORCH_VERSION,
              " (tensors on ", q.device(), ")");
#endif
}

// ---------------------------------------------------------------------------- grouped GEMM

constexpr bool kHasGroupedMm = MDS_TORCH_HAS_GROUPED_MM;

// out[rows of group g] = a[rows of group g] @ b[g]; a [M, K], b [G, K, N], offs int32 [G] (cumulative
// row ends, on a's device). Rows past offs[G-1] are unspecified.
inline at::Tensor grouped_mm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& offs) {
#if MDS_TORCH_HAS_GROUPED_MM
  return at::_grouped_mm(a, b, offs);
#else
  (void)b, (void)offs;
  TORCH_CHECK(false, "grouped_mm needs LibTorch >= 2.8; this build has ", TORCH_VERSION, " (tensors on ",
              a.device(), ")");
#endif
}

// ---------------------------------------------------------------------------- multi-tensor optimizer

constexpr bool kHasFusedAdamW = MDS_TORCH_HAS_FUSED_ADAMW;

// One AdamW step over the lists in one kernel family (torch.optim.AdamW(fused=True)): decoupled weight
// decay, then the bias-corrected update with the step counts in `steps` (float32 tensors, one per
// parameter, read not written); nothing changes where found_inf (a float32 0-dim tensor) is non-zero.
// The kernels divide the gradients by grad_scale (a float32 0-dim tensor) where it is defined.
inline void fused_adamw(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                        at::TensorList exp_avg_sqs, at::TensorList steps, double lr, double beta1, double beta2,
                        double weight_decay, double eps, const at::Tensor& found_inf,
                        const at::Tensor& grad_scale = {}) {
#if MDS_TORCH_HAS_FUSED_ADAMW
  const c10::optional<at::Tensor> scale = grad_scale.defined() ? c10::optional<at::Tensor>(grad_scale) : c10::nullopt;
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2,
                    weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false, scale, found_inf);
#else
  (void)grads, (void)exp_avgs, (void)exp_avg_sqs, (void)steps, (void)lr, (void)beta1, (void)beta2,
      (void)weight_decay, (void)eps, (void)found_inf, (void)grad_scale;
  TORCH_CHECK(false, "fused AdamW needs LibTorch >= 2.1; this build has ", TORCH_VERSION, " (", params.size(),
              " tensors)");
#endif
}

// list[i] *= scale (a 0-dim tensor on the lists' device: no host sync).
inline void foreach_mul_(at::TensorList list, const at::Tensor& scale) {
#if MDS_TORCH_HAS_FUSED_ADAMW
  at::_foreach_mul_(list, scale);
#else
  for (const at::Tensor& t : list) const_cast<at::Tensor&>(t).mul_(scale);
#endif
}

// list[i] <- lerp(list[i], end[i], weight) = list[i] + weight * (end[i] - list[i]), in one pass
// (torch.lerp's formula, which the CPU's lerp_ uses too).
inline void foreach_lerp_(at::TensorList list, at::TensorList end, double weight) {
#if MDS_TORCH_HAS_FUSED_ADAMW
  at::_foreach_lerp_(list, end, weight);
#else
  for (std::size_t i = 0; i < list.size(); ++i) const_cast<at::Tensor&>(list[i]).lerp_(end[i], weight);
#endif
}

// The L2 norm of each tensor of the list.
inline std::vector<at::Tensor> foreach_norm(at::TensorList list) {
#if MDS_TORCH_HAS_FUSED_ADAMW
  return at::_foreach_norm(list);
#else
  std::vector<at::Tensor> out;
  for (const at::Tensor& t : list) out.push_back(t.norm());
  return out;
#endif
}

}  // namespace mds::compat
