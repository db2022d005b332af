// The model's hyperparameters as plain structs, resolved from a Config (defaults filled in, per-layer
// dilation expanded) so that model code never reads configuration keys itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace mds::model {

struct AttentionOptions {
  bool sparse = true;                  // false: dense attention (plain DiffuSeq)
  int64_t window = 256;                // one-sided
  std::vector<int64_t> dilation_head;  // this layer's dilation per head (size = heads)
  bool global_projections = false;     // Longformer's separate Q_g, K_g, V_g
};

struct ModelOptions {
  int64_t vocab_size = 0;
  int64_t embed_dim = 128, dim = 768, layers = 12, heads = 12, ffn_dim = 3072, time_embed_dim = 128;
  int64_t max_positions = 0;
  bool pre_norm = true;
  // Under bf16 autocast: the residual stream and the layer norms in bf16 (model.bf16_residual).
  bool bf16_residual = true;
  double dropout = 0.1, layer_norm_eps = 1e-12, init_std = 0.02;
  // Attention, one entry per layer.
  std::vector<AttentionOptions> attention;
  // Mixture of experts (experts == 1: dense FFN).
  int64_t experts = 8, top_k = 2;
  bool renormalize = true;
  double capacity_factor = 0.0, jitter = 0.0;
  // Expert parallelism (model/expert_parallel.h): this model holds shard expert_shard of expert_shards
  // of every MoE layer's experts. Set by the program that runs the group, not by a configuration key.
  int64_t expert_shards = 1, expert_shard = 0;
  double aux_loss_weight = 0.01, z_loss_weight = 1e-3;
  bool soft_absorbing = true;
  // Recipe options (docs/math.md, "Learning fast"); the defaults of each are DiffuSeq's behaviour.
  bool x0_softmax = false;        // x0 = softmax(logits) @ W (CDCD/Plaid) instead of the regressed vector
  bool self_condition = false;    // the previous x0 estimate as an input, through a zero-initialised Linear
  bool embed_l2 = false;          // embedding rows at RMS embed_scale (norm sqrt(C) * embed_scale)
  double embed_scale = 1.0;
  bool restart_positions = false; // target positions restart at 1 (aligned with the source) + a segment embedding
  int64_t length_classes = 0;     // > 0: a length head over 0 .. length_classes - 1 target tokens
  bool copy_head = false;         // x0_softmax only: mix in a pointer over the source tokens (pointer-generator)
  int64_t copy_dim = 64;          // its query/key width
  // A canvas trained with data.canvas_rewrite_compact: a head that tells from the source whether its target is
  // a rewrite (written from the first place, started from the packed source) or an edit on the canvas.
  bool rewrite_head = false;
};

// Resolves the model.*, attention.* and moe.* keys; `vocab_size` comes from the tokenizer.
ModelOptions model_options_from_config(const Config& config, int64_t vocab_size);

// Dilation of each layer from attention.dilation: one value for all, one per layer, or (empty)
// 1 in the lower half and 2 in the upper half.
std::vector<int64_t> resolve_layer_dilation(const std::vector<int64_t>& configured, int64_t layers);

}  // namespace mds::model
