#include "model/model_options.h"

#include "core/error.h"
#include "data/batcher.h"

namespace mds::model {

using data::longest_row;
using data::pack_options_from_config;

std::vector<int64_t> resolve_layer_dilation(const std::vector<int64_t>& configured, int64_t layers) {
  std::vector<int64_t> out(static_cast<std::size_t>(layers), 1);
  if (configured.empty()) {
    for (int64_t l = layers / 2; l < layers; ++l) out[static_cast<std::size_t>(l)] = 2;
  } else if (configured.size() == 1) {
    for (auto& d : out) d = configured[0];
  } else {
    MDS_CHECK(static_cast<int64_t>(configured.size()) == layers, "attention.dilation has ", configured.size(),
              " values; give one, or one per layer (model.layers = ", layers, ")");
    out = configured;
  }
  return out;
}

ModelOptions model_options_from_config(const Config& c, int64_t vocab_size) {
  ModelOptions o;
  o.vocab_size = vocab_size;
  o.embed_dim = c.get_int("model.embed_dim");
  o.dim = c.get_int("model.dim");
  o.layers = c.get_int("model.layers");
  o.heads = c.get_int("model.heads");
  o.ffn_dim = c.get_int("model.ffn_dim");
  o.time_embed_dim = c.get_int("model.time_embed_dim");
  const int64_t longest = longest_row(pack_options_from_config(c));
  o.max_positions = c.get_int("model.max_positions");
  MDS_CHECK(o.max_positions == 0 || o.max_positions >= longest, c.origin("model.max_positions"),
            ": model.max_positions = ", o.max_positions, " is shorter than the longest row (", longest,
            "); set 0 to derive it");
  if (o.max_positions == 0) o.max_positions = longest;
  o.pre_norm = c.get_string("model.norm") == "pre";
  o.bf16_residual = c.get_bool("model.bf16_residual");
  o.dropout = c.get_float("model.dropout");
  o.layer_norm_eps = c.get_float("model.layer_norm_eps");
  o.init_std = c.get_float("model.init_std");

  const bool sparse = c.get_string("attention.type") == "sparse";
  const auto layer_dilation = resolve_layer_dilation(c.get_int_list("attention.dilation"), o.layers);
  const int64_t dilated_heads = c.get_int("attention.dilated_heads");
  for (int64_t l = 0; l < o.layers; ++l) {
    AttentionOptions a;
    a.sparse = sparse;
    a.window = c.get_int("attention.window");
    a.global_projections = c.get_bool("attention.global_projections");
    const int64_t d = layer_dilation[static_cast<std::size_t>(l)];
    // Longformer's recipe dilates only a few heads, so the others keep the fine local view.
    for (int64_t h = 0; h < o.heads; ++h)
      a.dilation_head.push_back(dilated_heads == 0 || h < dilated_heads ? d : 1);
    o.attention.push_back(a);
  }

  o.experts = c.get_int("moe.experts");
  o.top_k = c.get_int("moe.top_k");
  o.renormalize = c.get_bool("moe.renormalize");
  o.capacity_factor = c.get_float("moe.capacity_factor");
  o.jitter = c.get_float("moe.jitter");
  o.aux_loss_weight = c.get_float("moe.aux_loss_weight");
  o.z_loss_weight = c.get_float("moe.z_loss_weight");
  o.soft_absorbing = c.get_bool("diffusion.soft_absorbing");
  o.x0_softmax = c.get_string("model.x0") == "softmax";
  o.self_condition = c.get_bool("model.self_condition");
  o.embed_l2 = c.get_string("model.embed_norm") == "l2";
  o.embed_scale = c.get_float("model.embed_scale");
  o.restart_positions = c.get_string("model.target_positions") == "restart";
  o.copy_head = c.get_bool("model.copy_head");
  MDS_CHECK(!o.copy_head || o.x0_softmax, c.origin("model.copy_head"),
            ": model.copy_head = true needs model.x0 = \"softmax\" (it mixes into the vocabulary distribution)");
  // The head predicts the tokens before EOS: 0 .. max_trg_len - 1 (the region also holds the EOS).
  if (c.get_string("data.target_length") == "predict") o.length_classes = c.get_int("data.max_trg_len");
  o.rewrite_head = c.get_bool("data.canvas_rewrite_compact");
  return o;
}

}  // namespace mds::model
