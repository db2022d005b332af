// Self-attention of one block: projections around the attention kernel.
//
// Dimensions: B batch, L length, D model dim, H heads, K = D / H head dim, G global tokens.
//
// sparse: kernels::sliding_attention (window, per-head dilation, global tokens, key padding);
// dense:  every query sees every non-padding key (plain DiffuSeq), through the same dense reference.
// With global_projections, the rows of global tokens are recomputed with their own Q_g, K_g, V_g over
// all keys and replace the local result (Longformer, docs/math.md eq. A4).
#pragma once

#include <torch/torch.h>

#include "model/mask_facts.h"
#include "model/model_options.h"

namespace mds::model {

// Facts about one batch's masks that each layer's attention would otherwise find with a device sync,
// read from the device masks (one sync); the denoiser calls it only where its inputs do not carry them.
MaskFacts mask_facts(const torch::Tensor& key_mask_BL, const torch::Tensor& global_mask_BL);

class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t dim, int64_t heads, AttentionOptions options, double init_std);

  // x_BLD -> out_BLD (after the output projection).
  torch::Tensor forward(const torch::Tensor& x_BLD, const torch::Tensor& key_mask_BL,
                        const torch::Tensor& global_mask_BL, const MaskFacts& facts = {});

  const AttentionOptions& options() const { return options_; }
  void set_sparse(bool sparse) { options_.sparse = sparse; }

 private:
  torch::Tensor split_heads(const torch::Tensor& x_BLD) const;  // -> x_BHLK
  torch::Tensor global_rows(const torch::Tensor& x_BLD, const torch::Tensor& key_mask_BL,
                            const torch::Tensor& global_mask_BL, torch::Tensor out_BHLK, int64_t max_globals);

  int64_t dim_, heads_;
  AttentionOptions options_;
  torch::nn::Linear qkv_{nullptr}, out_{nullptr}, qkv_global_{nullptr};
};
TORCH_MODULE(SelfAttention);

}  // namespace mds::model
