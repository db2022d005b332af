#include "model/block.h"

#include "model/layer_norm.h"

namespace mds::model {

BlockImpl::BlockImpl(const ModelOptions& o, int64_t layer) : pre_norm_(o.pre_norm) {
  auto ln = torch::nn::LayerNormOptions({o.dim}).eps(o.layer_norm_eps);
  ln1_ = register_module("ln1", torch::nn::LayerNorm(ln));
  ln2_ = register_module("ln2", torch::nn::LayerNorm(ln));
  attention_ = register_module(
      "attention", SelfAttention(o.dim, o.heads, o.attention.at(static_cast<std::size_t>(layer)), o.init_std));
  MoeOptions m;
  m.dim = o.dim;
  m.ffn_dim = o.ffn_dim;
  m.experts = o.experts;
  m.top_k = o.top_k;
  m.renormalize = o.renormalize;
  m.capacity_factor = o.capacity_factor;
  m.jitter = o.jitter;
  m.init_std = o.init_std;
  m.expert_shards = o.expert_shards;
  m.expert_shard = o.expert_shard;
  moe_ = register_module("moe", MoeLayer(m));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout));
}

BlockOutput BlockImpl::forward(const torch::Tensor& h_BLD, const torch::Tensor& key_mask_BL,
                               const torch::Tensor& global_mask_BL, const MaskFacts& facts) {
  const auto B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2);
  BlockOutput out;
  auto ffn = [&](const torch::Tensor& x_BLD) {
    out.moe = moe_->forward(x_BLD.reshape({B * L, D}));
    return out.moe.y_ND.view({B, L, D});
  };
  torch::Tensor h = h_BLD;
  if (pre_norm_) {
    h = h + dropout_->forward(attention_->forward(layer_norm_as_input(ln1_, h), key_mask_BL, global_mask_BL, facts));
    h = h + dropout_->forward(ffn(layer_norm_as_input(ln2_, h)));
  } else {
    h = layer_norm_as_input(ln1_, h + dropout_->forward(attention_->forward(h, key_mask_BL, global_mask_BL, facts)));
    h = layer_norm_as_input(ln2_, h + dropout_->forward(ffn(h)));
  }
  out.h_BLD = h;
  return out;
}

}  // namespace mds::model
