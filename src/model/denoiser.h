// The MoE-DiffuSeq denoiser: (x_t, t, batch masks) -> (x0_hat, logits). docs/architecture.md draws it.
//
// Dimensions: B batch, L length, C embedding dim, D model dim, V vocabulary, T target-length classes,
// N target positions.
//
//   h  = Dropout(LN(UpProj(x_t) + PosEmb[pos] + TimeMlp(t) [+ SelfCond(x0_prev)] [+ Segment]))   eq. D1
//   h  = Block_l(h) for l = 1..layers   (attention + MoE FFN)                                      eq. D2
//   z  = DownProj(LN_final(h))          (LN_final with pre-LN only)
//   x0 = z                              (model.x0 = "regress", DiffuSeq)
//      = softmax(z W^T + b) W           on target positions (model.x0 = "softmax", CDCD / Plaid)
//   logits = z W^T + b                  tied rounding head                                         eq. D3
//
// W is the word embedding, learned end to end and also the diffusion space (L2-normalised rows with
// model.embed_norm = "l2"); the soft absorbing vector m lives here too, so that everything the sampler
// needs is one module's state. Options off = DiffuSeq's model, parameter for parameter.
//   self-conditioning  x0_prev (the previous estimate) enters through a Linear initialised to zero
//   restart positions  target position j gets position id j + 1, as source token j, plus a segment
//                      embedding (source / target)
//   length head        [mean over source positions of UpProj(anchor) ; sinusoid(source length)]
//                      -> Linear(2D, D) -> SiLU -> Linear(D, T): the number of target tokens before EOS
//   rewrite head       the same summary -> Linear(2D, D) -> SiLU -> Linear(D, 1): that the target is a
//                      rewrite, to be started from the packed source (data.canvas_rewrite_compact)
//   copy head          (softmax x0) p = g softmax(z W^T + b) + (1 - g) sum_i a_i onehot(src_i), with
//                      a = softmax over source positions of (h Wq)(h Wk)^T / sqrt(copy_dim) and
//                      g = sigmoid(h w_g + b_g) from the final hidden state h (pointer-generator)
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/block.h"
#include "model/embedding.h"
#include "model/model_options.h"

namespace mds::model {

// Position ids with model.target_positions = "restart": p on source positions, j + 1 on the j-th
// target position (0-based), so that it shares source token j's id. int64 [B, L].
torch::Tensor restart_position_ids(const torch::Tensor& trg_mask_BL);

// What the denoiser reads. Undefined optional tensors mean "none".
struct DenoiserInputs {
  torch::Tensor x_t_BLC;         // noised embeddings (the anchor on source positions)
  torch::Tensor t_B;             // model time (t * 1000 / T), float
  torch::Tensor key_mask_BL, global_mask_BL;
  torch::Tensor trg_mask_BL;     // optional: target positions (restart positions, softmax x0); undefined = all
  torch::Tensor self_cond_BLC;   // optional: the previous x0 estimate; undefined = zeros
  torch::Tensor ids_BL;          // the copy head only: the token ids (their source part is what it copies)
  // The copy head only: the first position of the target region (BatchTensors::src_region + 2), so
  // that it scores target rows against source keys ([B, T, S] instead of [B, L, L]); 0 = unknown.
  int64_t trg_start = 0;
  // Optional, from the host's copy of the batch (BatchTensors): they spare the device syncs that
  // finding them from the masks costs.
  torch::Tensor trg_rows_N;  // int64 flat indices of trg_mask_BL's true positions
  MaskFacts facts;
};

struct DenoiserOutput {
  torch::Tensor x0_BLC;      // predicted x0
  torch::Tensor logits_BLV;  // rounding head on z (x0 with model.x0 = "regress"), when asked for
  // model.x0 = "softmax": the target positions' logits (row-major); with the copy head the
  // log-probabilities of the mixed distribution (cross-entropy on them is -log p all the same)
  torch::Tensor x0_logits_NV;
  torch::Tensor moe_loss;    // aux_loss_weight * aux_loss + z_loss_weight * z_loss (scalar)
  torch::Tensor aux_loss, z_loss;  // means over layers, unweighted (for logging)
  std::vector<torch::Tensor> tokens_per_expert;  // per layer, int64 [E], on the model's device
  torch::Tensor dropped;  // int64 0-dim on the model's device: assignments dropped, all layers
};

// The parameters of the experts of a MoE layer ("blockN.moe.w1", b1, w2, b2; [E, ...] each), the
// ones expert parallelism shards along their first dimension.
bool is_expert_parameter(const std::string& name);

struct ParameterCounts {
  int64_t total = 0;
  int64_t active = 0;  // used per token: everything but the experts a token is not routed to
  int64_t embedding = 0, experts = 0;
  int64_t held = 0;  // in this process: total, less the experts of other processes (expert parallelism)
};

class DenoiserImpl : public torch::nn::Module {
 public:
  explicit DenoiserImpl(ModelOptions options);

  DenoiserOutput forward(const DenoiserInputs& inputs, bool with_logits = false);
  // The same without a target mask or self-conditioning input.
  DenoiserOutput forward(const torch::Tensor& x_t_BLC, const torch::Tensor& t_B, const torch::Tensor& key_mask_BL,
                         const torch::Tensor& global_mask_BL, bool with_logits = false);

  torch::Tensor embed(const torch::Tensor& ids_BL) const;     // -> [B, L, C]
  torch::Tensor logits(const torch::Tensor& x_BLC) const;     // -> [B, L, V] (any leading shape)
  // The embedding table the diffusion space uses: the learned rows, or the normalised ones. [V, C]
  torch::Tensor embedding_weight() const;
  // The empty places of a canvas (data.target_canvas) start from PAD's embedding; undefined for a
  // stride of 1 (no canvas). [C]
  torch::Tensor canvas_blank(int64_t stride) const;
  // The length head's logits [B, T] from the anchor (clean source embeddings) and the source positions
  // (BOS, source tokens, SEP: key_mask and not trg_mask). Needs options().length_classes > 0.
  torch::Tensor length_logits(const torch::Tensor& anchor_BLC, const torch::Tensor& src_mask_BL);
  bool has_length_head() const { return options_.length_classes > 0; }
  // The rewrite head's logit [B]: that the row's target is a rewrite (data.canvas_rewrite_compact: written
  // from the canvas's first place, started from the source packed there), from the same source summary.
  torch::Tensor rewrite_logits(const torch::Tensor& anchor_BLC, const torch::Tensor& src_mask_BL);
  bool has_rewrite_head() const { return static_cast<bool>(rewrite_fc1_); }
  const torch::Tensor& absorbing() const { return absorbing_; }  // m [C]; undefined when off
  const ModelOptions& options() const { return options_; }
  std::vector<Block>& blocks() { return blocks_; }
  // Expert parallelism: the group every MoE layer exchanges tokens with (options().expert_shards > 1;
  // not owned, nullptr to let go of it).
  void set_expert_exchange(ExpertExchange* group);

  ParameterCounts parameter_counts() const;
  std::string describe() const;  // one paragraph for the start-up log

 private:
  bool copy_head_active() const { return static_cast<bool>(copy_q_); }
  // What the length and rewrite heads read: [mean over the source of UpProj(anchor) ; sinusoid(source
  // length)], [B, 2D].
  torch::Tensor source_summary(const torch::Tensor& anchor_BLC, const torch::Tensor& src_mask_BL);
  // The copy head's mixture for the target rows trg_N (flat indices into B * L): float32 [N, V].
  torch::Tensor mix_in_copy(const torch::Tensor& h_BLD, const DenoiserInputs& in, const torch::Tensor& trg_N,
                            const torch::Tensor& p_vocab_NV);

  ModelOptions options_;
  torch::Tensor word_embedding_, lm_bias_, position_embedding_, absorbing_;
  Projection up_{nullptr}, down_{nullptr};
  TimeMlp time_mlp_{nullptr};
  torch::nn::LayerNorm ln_embed_{nullptr}, ln_final_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  std::vector<Block> blocks_;
  // Recipe options: registered only when on, after the rest, so that a model without them draws the
  // same initial weights as before they existed.
  torch::nn::Linear self_cond_{nullptr};
  torch::Tensor segment_embedding_;  // [2, D]: source, target
  torch::nn::Linear length_fc1_{nullptr}, length_fc2_{nullptr};
  torch::nn::Linear copy_q_{nullptr}, copy_k_{nullptr}, copy_gate_{nullptr};
  torch::nn::Linear rewrite_fc1_{nullptr}, rewrite_fc2_{nullptr};
};
TORCH_MODULE(Denoiser);

}  // namespace mds::model
