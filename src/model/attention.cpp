#include "model/attention.h"

#include <cmath>
#include <limits>

#include "kernels/sliding_attention/sliding_attention.h"
#include "model/linear.h"

namespace mds::model {

MaskFacts mask_facts(const torch::Tensor& key_mask_BL, const torch::Tensor& global_mask_BL) {
  if (key_mask_BL.numel() == 0) return {0, 0, 0};
  // The facts in one copy to the host.
  const torch::Tensor facts = torch::stack({global_mask_BL.sum(1).max(), key_mask_BL.logical_not().any().to(torch::kLong),
                                            key_mask_BL.any(1).logical_not().any().to(torch::kLong)})
                                  .cpu();
  return {facts[0].item<int64_t>(), static_cast<int>(facts[1].item<int64_t>()), static_cast<int>(facts[2].item<int64_t>())};
}

SelfAttentionImpl::SelfAttentionImpl(int64_t dim, int64_t heads, AttentionOptions options, double init_std)
    : dim_(dim), heads_(heads), options_(std::move(options)) {
  TORCH_CHECK(dim % heads == 0, "model.dim (", dim, ") must be divisible by model.heads (", heads, ")");
  qkv_ = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
  out_ = register_module("out", torch::nn::Linear(dim, dim));
  if (options_.global_projections) qkv_global_ = register_module("qkv_global", torch::nn::Linear(dim, 3 * dim));
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() == 2) p.normal_(0.0, init_std);
    else p.zero_();
  }
}

// A view, not a copy: the fused kernels (scaled_dot_product_attention, FlashAttention) read [B, H, L, K]
// with any strides whose last is 1, and hand their output back in [B, L, H, K] order, so the heads
// go back together without a copy either; the paths that index raw memory copy for themselves.
torch::Tensor SelfAttentionImpl::split_heads(const torch::Tensor& x_BLD) const {
  const auto B = x_BLD.size(0), L = x_BLD.size(1);
  return x_BLD.view({B, L, heads_, dim_ / heads_}).transpose(1, 2);
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x_BLD, const torch::Tensor& key_mask_BL,
                                         const torch::Tensor& global_mask_BL, const MaskFacts& facts) {
  const auto B = x_BLD.size(0), L = x_BLD.size(1);
  auto qkv = linear(qkv_, x_BLD).chunk(3, /*dim=*/-1);
  auto q_BHLK = split_heads(qkv[0]), k_BHLK = split_heads(qkv[1]), v_BHLK = split_heads(qkv[2]);

  torch::Tensor out_BHLK;
  if (options_.sparse) {
    kernels::SlidingAttentionParams params;
    params.window = options_.window;
    params.dilation = options_.dilation_head;
    params.max_globals = facts.max_globals;
    params.key_padding = facts.key_padding;
    params.empty_rows = facts.empty_rows;
    out_BHLK = kernels::sliding_attention(q_BHLK, k_BHLK, v_BHLK, key_mask_BL, global_mask_BL, params);
  } else {
    // Dense: every query sees every non-padding key (facts.key_padding < 0: not known, assume some).
    out_BHLK = kernels::dense_padded_attention(q_BHLK, k_BHLK, v_BHLK, key_mask_BL, facts.key_padding != 0,
                                               facts.empty_rows != 0);
  }
  if (options_.global_projections) out_BHLK = global_rows(x_BLD, key_mask_BL, global_mask_BL, out_BHLK, facts.max_globals);
  return linear(out_, out_BHLK.transpose(1, 2).reshape({B, L, dim_}));
}

// Global rows attend to every non-padding key through their own projections (O(G * L)).
torch::Tensor SelfAttentionImpl::global_rows(const torch::Tensor& x_BLD, const torch::Tensor& key_mask_BL,
                                             const torch::Tensor& global_mask_BL, torch::Tensor out_BHLK,
                                             int64_t max_globals) {
  const auto B = x_BLD.size(0), L = x_BLD.size(1), K = dim_ / heads_;
  const int64_t G = max_globals >= 0 ? max_globals : global_mask_BL.sum(1).max().item<int64_t>();
  if (G == 0) return out_BHLK;
  // Global positions first (stable), padded to G per row; `valid_BG` marks real ones.
  auto order_BL = std::get<1>(global_mask_BL.to(torch::kInt).sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  auto index_BG = order_BL.narrow(1, 0, G);
  auto valid_BG = global_mask_BL.gather(1, index_BG);

  auto qkv = linear(qkv_global_, x_BLD).chunk(3, -1);
  auto q_BHLK = split_heads(qkv[0]), k_BHLK = split_heads(qkv[1]), v_BHLK = split_heads(qkv[2]);
  auto index_BHGK = index_BG.view({B, 1, G, 1}).expand({B, heads_, G, K});
  auto qg_BHGK = q_BHLK.gather(2, index_BHGK);
  auto mask_BHGL = key_mask_BL.view({B, 1, 1, L}).expand({B, heads_, G, L});
  // softmax over all non-padding keys; a row without any gets zeros (where(), so no NaN gradients).
  const double scale = 1.0 / std::sqrt(static_cast<double>(K));
  auto scores_BHGL = torch::matmul(qg_BHGK, k_BHLK.transpose(-1, -2)) * scale;
  scores_BHGL = scores_BHGL.masked_fill(mask_BHGL.logical_not(), -std::numeric_limits<double>::infinity());
  auto any_BHG1 = mask_BHGL.any(-1, /*keepdim=*/true);
  auto probs_BHGL = torch::where(any_BHG1, torch::softmax(torch::where(any_BHG1, scores_BHGL, torch::zeros_like(scores_BHGL)), -1),
                                 torch::zeros_like(scores_BHGL));
  auto og_BHGK = torch::matmul(probs_BHGL, v_BHLK);
  // Padded slots write back the value already there, so they change nothing.
  auto keep_BHGK = valid_BG.view({B, 1, G, 1}).expand_as(og_BHGK);
  og_BHGK = torch::where(keep_BHGK, og_BHGK, out_BHLK.gather(2, index_BHGK));
  return out_BHLK.scatter(2, index_BHGK, og_BHGK);
}

}  // namespace mds::model
