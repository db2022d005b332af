// One transformer block: sparse (or dense) self-attention, then a mixture-of-experts FFN.
//   pre-LN:  h = h + drop(attn(LN1(h)));  h = h + drop(moe(LN2(h)))
//   post-LN: h = LN1(h + drop(attn(h))); h = LN2(h + drop(moe(h)))      (DiffuSeq/BERT)
// Dimensions: B batch, L length, D model dim, N = B*L tokens.
#pragma once

#include <torch/torch.h>

#include "model/attention.h"
#include "model/model_options.h"
#include "model/moe_layer.h"

namespace mds::model {

struct BlockOutput {
  torch::Tensor h_BLD;
  MoeLayerOutput moe;
};

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelOptions& options, int64_t layer);
  BlockOutput forward(const torch::Tensor& h_BLD, const torch::Tensor& key_mask_BL,
                      const torch::Tensor& global_mask_BL, const MaskFacts& facts = {});
  SelfAttention& attention() { return attention_; }
  MoeLayer& moe() { return moe_; }

 private:
  bool pre_norm_;
  torch::nn::LayerNorm ln1_{nullptr}, ln2_{nullptr};
  SelfAttention attention_{nullptr};
  MoeLayer moe_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(Block);

}  // namespace mds::model
