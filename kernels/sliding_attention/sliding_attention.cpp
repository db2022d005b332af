// sliding_attention: argument checks, device dispatch and the autograd Function; plus the dense
// specification (sliding_attention_mask, dense_masked_attention) built from plain torch ops.
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window, G global tokens.
//
// The loops live in sliding_attention_cpu.cpp (the reference, and the CPU path). CUDA tensors in
// bf16/fp16 take the split path (sliding_attention_split.cpp); in float32/float64 the dense
// specification. Semantics: docs/math.md, eq. A1-A3 and A5.
#include "kernels/sliding_attention/sliding_attention.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/torch_compat.h"
#include "kernels/sliding_attention/sliding_attention_cpu.h"
#include "kernels/sliding_attention/sliding_attention_split.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace mds::kernels {
namespace {

using detail::SlidingBand;

// ---------------------------------------------------------------------------- checks

void check_mask(const at::Tensor& mask_BL, const char* name, int64_t B, int64_t L,
                const at::Device& device) {
  TORCH_CHECK(mask_BL.defined(), "sliding_attention: ", name, " is undefined");
  TORCH_CHECK(mask_BL.scalar_type() == at::kBool, "sliding_attention: ", name,
              " must be bool, got ", mask_BL.scalar_type());
  TORCH_CHECK(mask_BL.dim() == 2 && mask_BL.size(0) == B && mask_BL.size(1) == L,
              "sliding_attention: ", name, " must have shape [B, L] = [", B, ", ", L, "], got ",
              mask_BL.sizes());
  TORCH_CHECK(mask_BL.device() == device, "sliding_attention: ", name, " is on ", mask_BL.device(),
              ", expected ", device, " (the device of the other inputs)");
}

// Window and dilation checks shared by the kernel and the mask; dilation expanded to size H.
SlidingBand resolve_band(const SlidingAttentionParams& params, int64_t H) {
  TORCH_CHECK(params.window >= 0, "sliding_attention: window must be >= 0, got ", params.window);
  const auto& dil = params.dilation;
  TORCH_CHECK(dil.empty() || dil.size() == 1 || static_cast<int64_t>(dil.size()) == H,
              "sliding_attention: dilation must have 1 or H = ", H, " entries, got ", dil.size(),
              " (", c10::IntArrayRef(dil), ")");
  SlidingBand band;
  band.window = params.window;
  band.dilation_H.assign(H, dil.empty() ? 1 : dil[0]);
  if (static_cast<int64_t>(dil.size()) == H) band.dilation_H = dil;
  for (int64_t h = 0; h < H; ++h)
    TORCH_CHECK(band.dilation_H[h] >= 1, "sliding_attention: dilation must be >= 1, got ",
                band.dilation_H[h], " for head ", h);
  return band;
}

double resolve_scale(double scale, int64_t K) {
  TORCH_CHECK(std::isfinite(scale), "sliding_attention: scale must be finite, got ", scale);
  return scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(K));
}

void check_qkv(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
               const char* who) {
  TORCH_CHECK(q_BHLK.defined() && k_BHLK.defined() && v_BHLK.defined(), who,
              ": q_BHLK, k_BHLK and v_BHLK must all be defined");
  TORCH_CHECK(q_BHLK.dim() == 4, who, ": q_BHLK must have shape [B, H, L, K], got ",
              q_BHLK.sizes());
  TORCH_CHECK(q_BHLK.size(3) >= 1, who, ": q_BHLK must have a head dim K >= 1, got ",
              q_BHLK.sizes());
  TORCH_CHECK(k_BHLK.sizes() == q_BHLK.sizes(), who, ": k_BHLK must have the shape of q_BHLK ",
              q_BHLK.sizes(), ", got ", k_BHLK.sizes());
  TORCH_CHECK(v_BHLK.sizes() == q_BHLK.sizes(), who, ": v_BHLK must have the shape of q_BHLK ",
              q_BHLK.sizes(), ", got ", v_BHLK.sizes());
  TORCH_CHECK(
      k_BHLK.scalar_type() == q_BHLK.scalar_type() && v_BHLK.scalar_type() == q_BHLK.scalar_type(),
      who, ": q_BHLK, k_BHLK and v_BHLK must have one dtype, got ", q_BHLK.scalar_type(), ", ",
      k_BHLK.scalar_type(), ", ", v_BHLK.scalar_type());
  TORCH_CHECK(k_BHLK.device() == q_BHLK.device() && v_BHLK.device() == q_BHLK.device(), who,
              ": q_BHLK, k_BHLK and v_BHLK must be on one device, got ", q_BHLK.device(), ", ",
              k_BHLK.device(), ", ", v_BHLK.device());
}

SlidingBand check_args(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                       const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL,
                       const SlidingAttentionParams& params) {
  check_qkv(q_BHLK, k_BHLK, v_BHLK, "sliding_attention");
  const at::ScalarType dtype = q_BHLK.scalar_type();
  if (q_BHLK.is_cuda()) {
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf,
                "sliding_attention: q_BHLK on CUDA must be float32, float64, bfloat16 or float16, got ",
                dtype);
  } else {
    TORCH_CHECK(q_BHLK.is_cpu(), "sliding_attention: q_BHLK is on ", q_BHLK.device(),
                "; sliding_attention runs on CPU or CUDA");
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
                "sliding_attention: q_BHLK on CPU must be float32 or float64, got ", dtype);
  }
  const int64_t B = q_BHLK.size(0), H = q_BHLK.size(1), L = q_BHLK.size(2), K = q_BHLK.size(3);
  check_mask(key_mask_BL, "key_mask_BL", B, L, q_BHLK.device());
  check_mask(global_mask_BL, "global_mask_BL", B, L, q_BHLK.device());
  SlidingBand band = resolve_band(params, H);
  band.scale = resolve_scale(params.scale, K);
  return band;
}

// ---------------------------------------------------------------------------- autograd

class SlidingAttentionFunction : public torch::autograd::Function<SlidingAttentionFunction> {
 public:
  // Inputs arrive checked and contiguous.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q_BHLK,
                            const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                            const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL,
                            const SlidingBand& band) {
    detail::SlidingForwardCpu fwd =
        detail::sliding_attention_forward_cpu(q_BHLK, k_BHLK, v_BHLK, key_mask_BL, global_mask_BL, band);
    ctx->save_for_backward(
        {q_BHLK, k_BHLK, v_BHLK, fwd.out_BHLK, fwd.lse_BHL, key_mask_BL, global_mask_BL});
    ctx->saved_data["window"] = band.window;
    ctx->saved_data["dilation"] = band.dilation_H;
    ctx->saved_data["scale"] = band.scale;
    return fwd.out_BHLK;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    SlidingBand band;
    band.window = ctx->saved_data["window"].toInt();
    band.dilation_H = ctx->saved_data["dilation"].toIntVector();
    band.scale = ctx->saved_data["scale"].toDouble();
    const at::Tensor dout_BHLK = grad_outputs[0].contiguous();
    detail::SlidingGradsCpu grads = detail::sliding_attention_backward_cpu(
        dout_BHLK, saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], saved[6], band);
    // One entry per forward argument: the masks and the band are not differentiable.
    return {grads.dq_BHLK, grads.dk_BHLK, grads.dv_BHLK, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

// ---------------------------------------------------------------------------- public API

at::Tensor sliding_attention(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK,
                             const at::Tensor& v_BHLK, const at::Tensor& key_mask_BL,
                             const at::Tensor& global_mask_BL,
                             const SlidingAttentionParams& params) {
  const SlidingBand band = check_args(q_BHLK, k_BHLK, v_BHLK, key_mask_BL, global_mask_BL, params);
  if (q_BHLK.is_cuda()) {
    const bool split = detail::split_path_supported(q_BHLK);
    // A window that covers the whole row with no dilation is dense attention over the non-padding
    // keys (globals add nothing): one fused kernel instead of the split path's passes.
    const bool whole_row = band.window >= q_BHLK.size(2) - 1 && params.scale <= 0.0 &&
                           std::all_of(band.dilation_H.begin(), band.dilation_H.end(), [](int64_t d) { return d == 1; });
    if (split && whole_row && MDS_TORCH_HAS_SDPA && fused_dense_attention())
      return dense_padded_attention(q_BHLK, k_BHLK, v_BHLK, key_mask_BL, params.key_padding != 0,
                                    params.empty_rows != 0);
    if (split)
      return detail::sliding_attention_split(q_BHLK.contiguous(), k_BHLK.contiguous(), v_BHLK.contiguous(),
                                             key_mask_BL.contiguous(), global_mask_BL.contiguous(), band,
                                             {params.max_globals, params.key_padding});
    const at::Tensor mask_BHLL = sliding_attention_mask(key_mask_BL, global_mask_BL, q_BHLK.size(1), params);
    return dense_masked_attention(q_BHLK, k_BHLK, v_BHLK, mask_BHLL, band.scale);
  }
  // The loops index raw memory; views such as q.view(B, L, H, K).transpose(1, 2) are copied here.
  return SlidingAttentionFunction::apply(q_BHLK.contiguous(), k_BHLK.contiguous(),
                                         v_BHLK.contiguous(), key_mask_BL.contiguous(),
                                         global_mask_BL.contiguous(), band);
}

// mask[b, h, i, j] = key_mask[b, j] && (|j - i| <= W d_h && (j - i) % d_h == 0 || global[b, i] ||
// global[b, j]): the same set as the loops' columns (docs/math.md eq. A1), as one L x L matrix.
at::Tensor sliding_attention_mask(const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL,
                                  int64_t heads, const SlidingAttentionParams& params) {
  TORCH_CHECK(heads >= 1, "sliding_attention_mask: heads must be >= 1, got ", heads);
  TORCH_CHECK(key_mask_BL.defined() && key_mask_BL.dim() == 2,
              "sliding_attention_mask: key_mask_BL must have shape [B, L], got ",
              key_mask_BL.defined() ? key_mask_BL.sizes() : at::IntArrayRef{});
  const int64_t B = key_mask_BL.size(0), L = key_mask_BL.size(1);
  check_mask(key_mask_BL, "key_mask_BL", B, L, key_mask_BL.device());
  check_mask(global_mask_BL, "global_mask_BL", B, L, key_mask_BL.device());
  const SlidingBand band = resolve_band(params, heads);

  const at::Tensor pos_L = at::arange(L, key_mask_BL.options().dtype(at::kLong));
  const at::Tensor offset_LL = pos_L.unsqueeze(0) - pos_L.unsqueeze(1);  // [i, j] = j - i
  std::vector<at::Tensor> band_per_head;
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t d = band.dilation_H[h];
    const int64_t reach = std::min(band.window, L) * d;  // min() keeps W * d from overflowing
    band_per_head.push_back(at::remainder(offset_LL, d).eq(0) & offset_LL.abs().le(reach));
  }
  const at::Tensor band_1HLL = at::stack(band_per_head).unsqueeze(0);
  const at::Tensor global_query_B11L = global_mask_BL.view({B, 1, L, 1});
  const at::Tensor global_key_B11L = global_mask_BL.view({B, 1, 1, L});
  const at::Tensor key_B11L = key_mask_BL.view({B, 1, 1, L});
  return (band_1HLL | global_query_B11L | global_key_B11L) & key_B11L;  // [B, H, L, L]
}

at::Tensor dense_masked_attention(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK,
                                  const at::Tensor& v_BHLK, const at::Tensor& mask_BHLL,
                                  double scale) {
  check_qkv(q_BHLK, k_BHLK, v_BHLK, "dense_masked_attention");
  const int64_t B = q_BHLK.size(0), H = q_BHLK.size(1), L = q_BHLK.size(2), K = q_BHLK.size(3);
  TORCH_CHECK(mask_BHLL.defined() && mask_BHLL.scalar_type() == at::kBool,
              "dense_masked_attention: mask_BHLL must be a bool tensor");
  TORCH_CHECK(mask_BHLL.sizes() == at::IntArrayRef({B, H, L, L}),
              "dense_masked_attention: mask_BHLL must have shape [B, H, L, L] = [", B, ", ", H,
              ", ", L, ", ", L, "], got ", mask_BHLL.sizes());
  const double s = resolve_scale(scale, K);

  const at::Tensor hidden_BHLL = mask_BHLL.logical_not();
  const at::Tensor empty_BHL1 = hidden_BHLL.all(-1, /*keepdim=*/true);  // rows with no visible key
  at::Tensor scores_BHLL = at::matmul(q_BHLK, k_BHLK.transpose(-2, -1)) * s;
  scores_BHLL = scores_BHLL.masked_fill(hidden_BHLL, -std::numeric_limits<double>::infinity());
  // An empty row would be softmax(-inf, ..., -inf) = NaN: give it finite scores, then zero its
  // probabilities, so that neither the output nor any gradient sees a NaN.
  scores_BHLL = at::where(empty_BHL1, at::zeros_like(scores_BHLL), scores_BHLL);
  at::Tensor p_BHLL = at::softmax(scores_BHLL, -1);
  p_BHLL = at::where(empty_BHL1, at::zeros_like(p_BHLL), p_BHLL);
  return at::matmul(p_BHLL, v_BHLK);
}

namespace {
std::atomic<bool> g_fused_dense_attention{true};
}  // namespace

void set_fused_dense_attention(bool on) { g_fused_dense_attention.store(on); }
bool fused_dense_attention() { return g_fused_dense_attention.load(); }

at::Tensor dense_padded_attention(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                                  const at::Tensor& key_mask_BL, bool any_padding, bool any_empty_row) {
  check_qkv(q_BHLK, k_BHLK, v_BHLK, "dense_padded_attention");
  const int64_t B = q_BHLK.size(0), H = q_BHLK.size(1), L = q_BHLK.size(2);
  check_mask(key_mask_BL, "key_mask_BL", B, L, q_BHLK.device());
#if MDS_TORCH_HAS_SDPA
  const bool half = q_BHLK.scalar_type() == at::kBFloat16 || q_BHLK.scalar_type() == at::kHalf;
  if (q_BHLK.is_cuda() && half && fused_dense_attention()) {
    if (!any_padding) return at::scaled_dot_product_attention(q_BHLK, k_BHLK, v_BHLK);
    if (!any_empty_row) return at::scaled_dot_product_attention(q_BHLK, k_BHLK, v_BHLK, key_mask_BL.view({B, 1, 1, L}));
    // A row of padding only would be softmax over no key (NaN): let it see every key, then zero it.
    const at::Tensor real_B = key_mask_BL.any(1);
    const at::Tensor visible_B11L = (key_mask_BL | real_B.logical_not().unsqueeze(1)).view({B, 1, 1, L});
    const at::Tensor out_BHLK = at::scaled_dot_product_attention(q_BHLK, k_BHLK, v_BHLK, visible_B11L);
    return out_BHLK * real_B.view({B, 1, 1, 1}).to(out_BHLK.scalar_type());
  }
#endif
  (void)any_padding, (void)any_empty_row;
  return dense_masked_attention(q_BHLK, k_BHLK, v_BHLK, key_mask_BL.view({B, 1, 1, L}).expand({B, H, L, L}));
}

}  // namespace mds::kernels
