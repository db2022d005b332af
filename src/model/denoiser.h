// The MoE-DiffuSeq denoiser: (x_t, t, batch masks) -> (x0_hat, logits). docs/architecture.md draws it.
//
// Dimensions: B batch, L length, C embedding dim, D model dim, V vocabulary.
//
//   h  = Dropout(LN(UpProj(x_t) + PosEmb[0..L) + TimeMlp(t)))        eq. D1
//   h  = Block_l(h) for l = 1..layers   (attention + MoE FFN)         eq. D2
//   x0 = DownProj(LN_final(h))          (LN_final with pre-LN only)
//   logits = x0 W_emb^T + b             tied rounding head            eq. D3
//
// The word embedding W_emb is learned end to end and is also the diffusion space; the soft absorbing
// vector m lives here too, so that everything the sampler needs is one module's state.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/block.h"
#include "model/embedding.h"
#include "model/model_options.h"

namespace mds::model {

struct DenoiserOutput {
  torch::Tensor x0_BLC;      // predicted x0
  torch::Tensor logits_BLV;  // rounding head on x0_BLC, when asked for
  torch::Tensor moe_loss;    // aux_loss_weight * aux_loss + z_loss_weight * z_loss (scalar)
  torch::Tensor aux_loss, z_loss;  // means over layers, unweighted (for logging)
  std::vector<torch::Tensor> tokens_per_expert;  // per layer, int64 [E], on the model's device
  torch::Tensor dropped;  // int64 0-dim on the model's device: assignments dropped, all layers
};

struct ParameterCounts {
  int64_t total = 0;
  int64_t active = 0;  // used per token: everything but the experts a token is not routed to
  int64_t embedding = 0, experts = 0;
};

class DenoiserImpl : public torch::nn::Module {
 public:
  explicit DenoiserImpl(ModelOptions options);

  // x_t_BLC: noised embeddings; t_B: model time (t * 1000 / T), float.
  DenoiserOutput forward(const torch::Tensor& x_t_BLC, const torch::Tensor& t_B, const torch::Tensor& key_mask_BL,
                         const torch::Tensor& global_mask_BL, bool with_logits = false);

  torch::Tensor embed(const torch::Tensor& ids_BL) const;     // -> [B, L, C]
  torch::Tensor logits(const torch::Tensor& x_BLC) const;     // -> [B, L, V]
  const torch::Tensor& embedding_weight() const { return word_embedding_; }  // [V, C]
  const torch::Tensor& absorbing() const { return absorbing_; }  // m [C]; undefined when off
  const ModelOptions& options() const { return options_; }
  std::vector<Block>& blocks() { return blocks_; }

  ParameterCounts parameter_counts() const;
  std::string describe() const;  // one paragraph for the start-up log

 private:
  ModelOptions options_;
  torch::Tensor word_embedding_, lm_bias_, position_embedding_, absorbing_;
  Projection up_{nullptr}, down_{nullptr};
  TimeMlp time_mlp_{nullptr};
  torch::nn::LayerNorm ln_embed_{nullptr}, ln_final_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  std::vector<Block> blocks_;
};
TORCH_MODULE(Denoiser);

}  // namespace mds::model
