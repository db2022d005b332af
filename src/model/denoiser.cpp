#include "model/denoiser.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "data/special_tokens.h"
#include "model/layer_norm.h"
#include "model/linear.h"

namespace mds::model {

using data::SpecialTokens;

DenoiserImpl::DenoiserImpl(ModelOptions o) : options_(std::move(o)) {
  const auto& o_ = options_;
  MDS_CHECK(o_.vocab_size > SpecialTokens::count, "vocabulary size ", o_.vocab_size, " is too small");
  MDS_CHECK(static_cast<int64_t>(o_.attention.size()) == o_.layers, "internal error: attention options per layer");
  // DiffuSeq initialises the word embedding N(0, 1): token vectors start far apart.
  word_embedding_ = register_parameter("word_embedding", torch::randn({o_.vocab_size, o_.embed_dim}));
  lm_bias_ = register_parameter("lm_bias", torch::zeros({o_.vocab_size}));
  position_embedding_ =
      register_parameter("position_embedding", torch::randn({o_.max_positions, o_.dim}) * o_.init_std);
  if (o_.soft_absorbing)  // DiffuSeq-v2: m ~ N(0, 1/C)
    absorbing_ = register_parameter("absorbing", torch::randn({o_.embed_dim}) / std::sqrt(double(o_.embed_dim)));
  up_ = register_module("up", Projection(o_.embed_dim, o_.dim, o_.dim));
  down_ = register_module("down", Projection(o_.dim, o_.dim, o_.embed_dim));
  time_mlp_ = register_module("time_mlp", TimeMlp(o_.time_embed_dim, o_.dim));
  auto ln = torch::nn::LayerNormOptions({o_.dim}).eps(o_.layer_norm_eps);
  ln_embed_ = register_module("ln_embed", torch::nn::LayerNorm(ln));
  if (o_.pre_norm) ln_final_ = register_module("ln_final", torch::nn::LayerNorm(ln));
  dropout_ = register_module("dropout", torch::nn::Dropout(o_.dropout));
  for (int64_t l = 0; l < o_.layers; ++l)
    blocks_.push_back(register_module("block" + std::to_string(l), Block(o_, l)));
  if (o_.self_condition) {
    // Zero at the start: self-conditioning begins as the model without it (Analog Bits).
    self_cond_ = register_module("self_cond", torch::nn::Linear(o_.embed_dim, o_.dim));
    torch::NoGradGuard no_grad;
    self_cond_->weight.zero_();
    self_cond_->bias.zero_();
  }
  if (o_.restart_positions)
    segment_embedding_ = register_parameter("segment_embedding", torch::randn({2, o_.dim}) * o_.init_std);
  if (o_.length_classes > 0) {
    length_fc1_ = register_module("length_fc1", torch::nn::Linear(2 * o_.dim, o_.dim));
    length_fc2_ = register_module("length_fc2", torch::nn::Linear(o_.dim, o_.length_classes));
  }
  if (o_.copy_head) {
    copy_q_ = register_module("copy_q", torch::nn::Linear(o_.dim, o_.copy_dim));
    copy_k_ = register_module("copy_k", torch::nn::Linear(o_.dim, o_.copy_dim));
    copy_gate_ = register_module("copy_gate", torch::nn::Linear(o_.dim, 1));
  }
  if (o_.rewrite_head) {
    rewrite_fc1_ = register_module("rewrite_fc1", torch::nn::Linear(2 * o_.dim, o_.dim));
    rewrite_fc2_ = register_module("rewrite_fc2", torch::nn::Linear(o_.dim, 1));
  }
}

torch::Tensor restart_position_ids(const torch::Tensor& trg_mask_BL) {
  // Target position j (0-based) takes position id j + 1, the id of source token j after BOS.
  const torch::Tensor trg_BL = trg_mask_BL.to(torch::kLong);
  const int64_t B = trg_BL.size(0), L = trg_BL.size(1);
  return torch::where(trg_mask_BL, trg_BL.cumsum(1), torch::arange(L, trg_BL.options()).unsqueeze(0).expand({B, L}));
}

torch::Tensor DenoiserImpl::embedding_weight() const {
  if (!options_.embed_l2) return word_embedding_;
  // Rows at RMS embed_scale: norm sqrt(C) * embed_scale.
  const double norm = std::sqrt(static_cast<double>(options_.embed_dim)) * options_.embed_scale;
  return word_embedding_ * (norm / word_embedding_.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12));
}

torch::Tensor DenoiserImpl::embed(const torch::Tensor& ids_BL) const {
  if (!options_.embed_l2) return torch::embedding(word_embedding_, ids_BL);
  return torch::embedding(embedding_weight(), ids_BL);
}

torch::Tensor DenoiserImpl::canvas_blank(int64_t stride) const {
  return stride > 1 ? embedding_weight()[data::SpecialTokens::pad] : torch::Tensor();
}

torch::Tensor DenoiserImpl::logits(const torch::Tensor& x_BLC) const {
  const torch::Tensor w = embedding_weight();
  return torch::linear(x_BLC, w.to(x_BLC.scalar_type()), lm_bias_.to(x_BLC.scalar_type()));
}

torch::Tensor DenoiserImpl::source_summary(const torch::Tensor& anchor_BLC, const torch::Tensor& src_mask_BL) {
  const torch::Tensor up_BLD = up_->forward(anchor_BLC);
  const torch::Tensor w_BL1 = src_mask_BL.unsqueeze(-1).to(up_BLD.scalar_type());
  const torch::Tensor count_B1 = w_BL1.sum(1).clamp_min(1.0);
  const torch::Tensor pooled_BD = (up_BLD * w_BL1).sum(1) / count_B1;
  // The source length itself, as the model sees time: a sinusoid of the count.
  const torch::Tensor length_BD = timestep_embedding(count_B1.squeeze(1), options_.dim).to(pooled_BD.scalar_type());
  return torch::cat({pooled_BD, length_BD}, 1);
}

torch::Tensor DenoiserImpl::length_logits(const torch::Tensor& anchor_BLC, const torch::Tensor& src_mask_BL) {
  MDS_CHECK(has_length_head(), "this model has no length head (data.target_length = \"generate\")");
  return linear(length_fc2_, torch::silu(linear(length_fc1_, source_summary(anchor_BLC, src_mask_BL))));
}

torch::Tensor DenoiserImpl::rewrite_logits(const torch::Tensor& anchor_BLC, const torch::Tensor& src_mask_BL) {
  MDS_CHECK(has_rewrite_head(), "this model has no rewrite head (data.canvas_rewrite_compact = false)");
  return linear(rewrite_fc2_, torch::silu(linear(rewrite_fc1_, source_summary(anchor_BLC, src_mask_BL)))).squeeze(1);
}

DenoiserOutput DenoiserImpl::forward(const torch::Tensor& x_t_BLC, const torch::Tensor& t_B,
                                     const torch::Tensor& key_mask_BL, const torch::Tensor& global_mask_BL,
                                     bool with_logits) {
  DenoiserInputs in;
  in.x_t_BLC = x_t_BLC;
  in.t_B = t_B;
  in.key_mask_BL = key_mask_BL;
  in.global_mask_BL = global_mask_BL;
  return forward(in, with_logits);
}

DenoiserOutput DenoiserImpl::forward(const DenoiserInputs& in, bool with_logits) {
  const torch::Tensor& x_t_BLC = in.x_t_BLC;
  const torch::Tensor& t_B = in.t_B;
  const torch::Tensor& key_mask_BL = in.key_mask_BL;
  const torch::Tensor& global_mask_BL = in.global_mask_BL;
  const auto B = x_t_BLC.size(0), L = x_t_BLC.size(1);
  MDS_CHECK(L <= options_.max_positions, "sequence of length ", L, " is longer than model.max_positions = ",
            options_.max_positions);
  TORCH_CHECK(x_t_BLC.dim() == 3 && x_t_BLC.size(2) == options_.embed_dim, "x_t must be [B, L, ",
              options_.embed_dim, "], got ", x_t_BLC.sizes());
  TORCH_CHECK(t_B.dim() == 1 && t_B.size(0) == B, "t must be [B] = [", B, "], got ", t_B.sizes());

  torch::Tensor h;
  if (options_.restart_positions && in.trg_mask_BL.defined()) {
    h = up_->forward(x_t_BLC) + torch::embedding(position_embedding_, restart_position_ids(in.trg_mask_BL)) +
        torch::embedding(segment_embedding_, in.trg_mask_BL.to(torch::kLong)) + time_mlp_->forward(t_B).unsqueeze(1);
  } else {
    h = up_->forward(x_t_BLC) + position_embedding_.narrow(0, 0, L).unsqueeze(0) +
        time_mlp_->forward(t_B).unsqueeze(1);
  }
  if (self_cond_ && in.self_cond_BLC.defined()) h = h + linear(self_cond_, in.self_cond_BLC.to(x_t_BLC.scalar_type()));
  h = dropout_->forward(ln_embed_->forward(h));
  // The residual stream in the compute precision (model.bf16_residual): its adds and norms then read
  // and write half the bytes, with no casts around each norm. Off, autocast keeps it in float32.
  const c10::DeviceType device_type = h.device().type();
  if (options_.bf16_residual && h.scalar_type() == torch::kFloat && compat::autocast_enabled(device_type) &&
      compat::autocast_dtype(device_type) == torch::kBFloat16)
    h = h.to(torch::kBFloat16);

  DenoiserOutput out;
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(x_t_BLC.device());
  out.aux_loss = torch::zeros({}, opts);
  out.z_loss = torch::zeros({}, opts);
  std::vector<torch::Tensor> dropped;  // summed on the device: no host sync per layer
  const MaskFacts facts = in.facts.max_globals >= 0 && in.facts.key_padding >= 0 && in.facts.empty_rows >= 0 ? in.facts
                                                                                 : mask_facts(key_mask_BL, global_mask_BL);
  for (auto& block : blocks_) {
    BlockOutput b = block->forward(h, key_mask_BL, global_mask_BL, facts);
    h = b.h_BLD;
    out.aux_loss = out.aux_loss + b.moe.aux_loss;
    out.z_loss = out.z_loss + b.moe.z_loss;
    out.tokens_per_expert.push_back(b.moe.tokens_per_expert_E);
    dropped.push_back(b.moe.dropped);
  }
  out.dropped = dropped.empty() ? torch::zeros({}, opts.dtype(torch::kLong)) : torch::stack(dropped).sum();
  // Averaged over layers, so the weights mean the same whatever the depth (MegaBlocks does this).
  out.aux_loss = out.aux_loss / static_cast<double>(blocks_.size());
  out.z_loss = out.z_loss / static_cast<double>(blocks_.size());
  out.moe_loss = options_.aux_loss_weight * out.aux_loss + options_.z_loss_weight * out.z_loss;
  if (options_.pre_norm) h = layer_norm_as_input(ln_final_, h);
  torch::Tensor z_BLC = down_->forward(h);
  if (with_logits) out.logits_BLV = logits(z_BLC);
  if (!options_.x0_softmax) {
    out.x0_BLC = z_BLC;
    return out;
  }
  // x0 as the expected embedding under the predicted distribution, on target positions only (the
  // source is the anchor): [N, V] logits, never [B, L, V] for a long source.
  const torch::Tensor trg_N = in.trg_rows_N.defined()    ? in.trg_rows_N
                              : in.trg_mask_BL.defined() ? in.trg_mask_BL.reshape({-1}).nonzero().squeeze(1)
                                                         : torch::arange(B * L, z_BLC.options().dtype(torch::kLong));
  const torch::Tensor z_NC = z_BLC.reshape({B * L, -1}).index_select(0, trg_N);
  out.x0_logits_NV = logits(z_NC);
  torch::Tensor p_NV = torch::softmax(out.x0_logits_NV.to(torch::kFloat), -1);
  if (copy_head_active()) {
    p_NV = mix_in_copy(h, in, trg_N, p_NV);
    out.x0_logits_NV = p_NV.clamp_min(1e-12).log();
  }
  const torch::Tensor w_VC = embedding_weight();
  const torch::Tensor x0_NC = torch::matmul(p_NV.to(z_NC.scalar_type()), w_VC.to(z_NC.scalar_type()));
  out.x0_BLC = z_BLC.reshape({B * L, -1}).index_copy(0, trg_N, x0_NC.to(z_BLC.scalar_type())).view(z_BLC.sizes());
  return out;
}

torch::Tensor DenoiserImpl::mix_in_copy(const torch::Tensor& h_BLD, const DenoiserInputs& in, const torch::Tensor& trg_N,
                                        const torch::Tensor& p_vocab_NV) {
  MDS_CHECK(in.ids_BL.defined() && in.trg_mask_BL.defined(), "the copy head needs the batch's ids and target mask");
  const int64_t B = h_BLD.size(0), L = h_BLD.size(1), V = p_vocab_NV.size(1);
  // Rows [first, L) (the target region) against keys [0, K) (BOS, source, SEP); without trg_start
  // every row against every key, which gives the same values at L x L cost.
  const int64_t first = in.trg_start > 0 && in.trg_start < L ? in.trg_start : 0;
  const int64_t R = L - first, K = first > 0 ? first : L;
  const torch::Tensor q_BRc = linear(copy_q_, h_BLD.narrow(1, first, R));
  const torch::Tensor k_BKc = linear(copy_k_, h_BLD.narrow(1, 0, K));
  // Attention over the source tokens (BOS and SEP included: the model learns to ignore them), in
  // float32; each row has BOS at least, so no row is empty.
  torch::Tensor s_BRK = torch::matmul(q_BRc, k_BKc.transpose(1, 2)).to(torch::kFloat) /
                        std::sqrt(static_cast<double>(options_.copy_dim));
  const torch::Tensor src_B1K =
      in.key_mask_BL.logical_and(in.trg_mask_BL.logical_not()).narrow(1, 0, K).unsqueeze(1);
  s_BRK = s_BRK.masked_fill(src_B1K.logical_not(), -std::numeric_limits<float>::infinity());
  // Target position n = b L + l is row b R + (l - first).
  const torch::Tensor row_N = torch::div(trg_N, L, "floor");
  const torch::Tensor a_NK = torch::softmax(s_BRK, -1).view({B * R, K}).index_select(0, trg_N - (row_N + 1) * first);
  // The probability of copying token v: the attention on the source positions that hold v.
  const torch::Tensor ids_NK = in.ids_BL.narrow(1, 0, K).to(torch::kLong).index_select(0, row_N);
  const torch::Tensor p_copy_NV = torch::zeros({trg_N.size(0), V}, a_NK.options()).scatter_add_(1, ids_NK, a_NK);
  const torch::Tensor g_N1 =
      torch::sigmoid(linear(copy_gate_, h_BLD.reshape({B * L, -1}).index_select(0, trg_N)).to(torch::kFloat));
  return g_N1 * p_vocab_NV + (1.0 - g_N1) * p_copy_NV;
}

bool is_expert_parameter(const std::string& name) {
  for (const char* suffix : {".moe.w1", ".moe.b1", ".moe.w2", ".moe.b2"}) {
    const std::size_t n = std::char_traits<char>::length(suffix);
    if (name.size() >= n && name.compare(name.size() - n, n, suffix) == 0) return true;
  }
  return false;
}

void DenoiserImpl::set_expert_exchange(ExpertExchange* group) {
  for (Block& block : blocks_) block->moe()->set_expert_exchange(group);
}

ParameterCounts DenoiserImpl::parameter_counts() const {
  ParameterCounts c;
  for (const auto& p : named_parameters()) {
    const int64_t n = p.value().numel();
    c.total += n;
    if (p.key() == "word_embedding" || p.key() == "lm_bias" || p.key() == "position_embedding") c.embedding += n;
    if (is_expert_parameter(p.key())) c.experts += n;
  }
  // Expert parallelism: the whole model's counts (the shards are the same size); this process's apart.
  c.held = c.total;
  c.total += c.experts * (options_.expert_shards - 1);
  c.experts *= options_.expert_shards;
  // A token uses top_k of the experts' parameters (all of them when experts == 1).
  const int64_t used_experts = options_.experts == 1 ? c.experts : c.experts / options_.experts * options_.top_k;
  c.active = c.total - c.experts + used_experts;
  return c;
}

std::string DenoiserImpl::describe() const {
  const auto c = parameter_counts();
  const auto& o = options_;
  std::ostringstream os;
  auto millions = [](int64_t n) { std::ostringstream s; s.precision(3); s << n / 1e6 << "M"; return s.str(); };
  os << "denoiser: " << o.layers << " layers, dim " << o.dim << ", " << o.heads << " heads, embed " << o.embed_dim
     << ", vocab " << o.vocab_size << ", " << (o.attention.empty() || o.attention[0].sparse ? "sparse" : "dense")
     << " attention";
  if (!o.attention.empty() && o.attention[0].sparse) {
    os << " (window " << o.attention[0].window << ", dilation per layer";
    for (const auto& a : o.attention) os << " " << a.dilation_head.front();
    os << ")";
  }
  os << ", " << (o.experts == 1 ? std::string("dense FFN") : str_cat(o.experts, " experts top-", o.top_k)) << " (ffn "
     << o.ffn_dim << ")\nparameters: " << millions(c.total) << " total, " << millions(c.active)
     << " active per token (embeddings " << millions(c.embedding) << ", experts " << millions(c.experts) << ")";
  if (o.expert_shards > 1)
    os << "; this process holds " << millions(c.held) << " (experts shard " << o.expert_shard << " of " << o.expert_shards
       << ")";
  return os.str();
}

}  // namespace mds::model
