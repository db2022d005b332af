#include "diffusion/loss.h"

#include <torch/torch.h>

#include "core/config.h"
#include "core/host_to_device.h"
#include "data/batcher.h"

namespace mds::diffusion {

using model::BatchTensors;
using model::Denoiser;
using model::DenoiserInputs;
using model::DenoiserOutput;

namespace {

// float32, or float64 where the input is float64 (tests): never below float32.
torch::Tensor at_least_fp32(const torch::Tensor& t) {
  return t.scalar_type() == torch::kDouble ? t : t.to(torch::kFloat);
}

// Mean of per_token_BL over the chosen positions of each row (rows without any give 0).
torch::Tensor masked_mean_B(const torch::Tensor& per_token_BL, const torch::Tensor& chosen_BL) {
  auto w_BL = chosen_BL.to(per_token_BL.scalar_type());
  return (per_token_BL * w_BL).sum(1) / w_BL.sum(1).clamp_min(1.0);
}

}  // namespace

LossOptions loss_options_from_config(const Config& c) {
  LossOptions o;
  o.target_only = c.get_string("loss.positions") == "target";
  o.rounding_weight = c.get_float("loss.rounding_weight");
  o.prior_weight = c.get_float("loss.prior_weight");
  o.absorb_reg = c.get_float("loss.absorb_reg");
  o.forward.soft_absorbing = c.get_bool("diffusion.soft_absorbing");
  o.forward.absorb_rate = c.get_float("diffusion.absorb_rate");
  o.mse_weight = c.get_float("loss.mse_weight");
  o.x0_ce_weight = c.get_float("loss.x0_ce_weight");
  if (c.get_string("data.target_length") == "predict") o.length_weight = c.get_float("loss.length_weight");
  if (c.get_bool("data.canvas_rewrite_compact")) o.rewrite_weight = c.get_float("loss.rewrite_weight");
  if (c.get_bool("model.self_condition")) o.self_condition_prob = c.get_float("train.self_condition_prob");
  o.source_start_prob = c.get_float("train.source_start_prob");
  o.source_start_time = c.get_float("train.source_start_time");
  o.canvas_stride = data::canvas_stride(data::pack_options_from_config(c));
  return o;
}

namespace {
torch::Tensor rows_of(const torch::Tensor& chosen_BL, const torch::Tensor& rows_N) {
  return rows_N.defined() ? rows_N : chosen_BL.reshape({-1}).nonzero().squeeze(1);
}
}  // namespace

torch::Tensor chosen_rows(const torch::Tensor& x_BLC, const torch::Tensor& chosen_BL, const torch::Tensor& rows_N) {
  auto idx = rows_of(chosen_BL, rows_N);
  return x_BLC.reshape({-1, x_BLC.size(-1)}).index_select(0, idx);
}

torch::Tensor mse_loss_B(const torch::Tensor& x0_hat_BLC, const torch::Tensor& target_BLC,
                         const torch::Tensor& chosen_BL) {
  auto diff_BLC = at_least_fp32(target_BLC) - at_least_fp32(x0_hat_BLC);
  return masked_mean_B(diff_BLC.pow(2).mean(-1), chosen_BL);
}

torch::Tensor rounding_loss_B(const torch::Tensor& logits_NV, const torch::Tensor& ids_BL,
                              const torch::Tensor& chosen_BL, const torch::Tensor& rows_N) {
  const auto B = ids_BL.size(0);
  auto idx = rows_of(chosen_BL, rows_N);
  // log-softmax in float32: bf16 logits would round the log-sum-exp of a large vocabulary.
  auto ce_N = torch::nn::functional::cross_entropy(
      at_least_fp32(logits_NV), ids_BL.reshape({-1}).index_select(0, idx),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  auto ce_BL = torch::zeros({chosen_BL.numel()}, ce_N.options()).index_add(0, idx, ce_N).view({B, -1});
  return masked_mean_B(ce_BL, chosen_BL);
}

torch::Tensor prior_loss_B(const torch::Tensor& x0_BLC, const torch::Tensor& m_C, double sqrt_ab_last,
                           const torch::Tensor& chosen_BL) {
  auto x_BLC = at_least_fp32(x0_BLC);
  auto centred_BLC = m_C.defined() ? x_BLC - at_least_fp32(m_C).view({1, 1, -1}) : x_BLC;
  return masked_mean_B((sqrt_ab_last * centred_BLC).pow(2).mean(-1), chosen_BL);
}

LossTerms diffusion_loss(Denoiser& model, const BatchTensors& batch, const NoiseSchedule& s, const torch::Tensor& t_B,
                         const torch::Tensor& weight_B, const LossOptions& o, at::Generator gen,
                         const torch::Tensor& from_source_B) {
  const auto device = batch.ids_BL.device();
  const auto B = batch.ids_BL.size(0);
  auto emb_BLC = model->embed(batch.ids_BL);
  const torch::Tensor& m_C = model->absorbing();
  Noised noised = noise_batch(s, emb_BLC, t_B, batch.trg_mask_BL, m_C, o.forward, gen);
  if (from_source_B.defined()) {
    // The chosen rows' input comes from the source put in the target's place, noised the same way.
    const Noised from_source =
        noise_batch(s, model::source_aligned_x0(batch, emb_BLC, m_C, o.canvas_stride, model->canvas_blank(o.canvas_stride)),
                    t_B, batch.trg_mask_BL, m_C, o.forward, gen);
    noised.x_t_BLC = torch::where(to_device_async(from_source_B, device).view({B, 1, 1}), from_source.x_t_BLC,
                                  noised.x_t_BLC);
  }

  auto t_dev = to_device_async(t_B, device);
  auto model_t_B = t_dev.to(torch::kFloat) * (1000.0 / static_cast<double>(s.steps));
  DenoiserInputs in;
  in.x_t_BLC = noised.x_t_BLC;
  in.t_B = model_t_B;
  in.key_mask_BL = batch.key_mask_BL;
  in.global_mask_BL = batch.global_mask_BL;
  in.trg_mask_BL = batch.trg_mask_BL;
  in.ids_BL = batch.ids_BL;  // the copy head reads the source tokens
  in.trg_start = batch.src_region + 2;
  in.trg_rows_N = batch.trg_rows_N;
  in.facts = batch.facts;
  // Self-conditioning: on a share of the steps, a first estimate without gradient is fed back (its
  // source positions hold the anchor, as the sampler feeds it). One draw per step, none when off.
  if (o.self_condition_prob > 0 && at::rand({1}, gen).item<double>() < o.self_condition_prob) {
    torch::NoGradGuard no_grad;
    const torch::Tensor first = model->forward(in).x0_BLC.detach();
    in.self_cond_BLC = torch::where(batch.trg_mask_BL.unsqueeze(-1), first.to(noised.x_t_BLC.scalar_type()),
                                    noised.x_t_BLC);
  }
  DenoiserOutput out = model->forward(in);

  // Under bf16 autocast the model's outputs are bf16: every term is computed in float32 from here on.
  auto chosen_BL = o.target_only ? batch.trg_mask_BL : batch.key_mask_BL;
  const torch::Tensor& chosen_N = o.target_only ? batch.trg_rows_N : batch.key_rows_N;
  // L1: x0 regression; at t = 0 the target is the clean embedding itself (DiffuSeq).
  auto target_BLC = torch::where((t_dev == 0).view({B, 1, 1}), emb_BLC, noised.x0_BLC);
  auto mse_B = mse_loss_B(out.x0_BLC, target_BLC, chosen_BL);
  // L2: rounding cross-entropy of the noisy x0 against the ids, on the chosen positions only: the
  // [positions x V] logits are the largest tensor of a small model's step.
  auto rounding_B = rounding_loss_B(model->logits(chosen_rows(noised.x0_BLC, chosen_BL, chosen_N)), batch.ids_BL,
                                    chosen_BL, chosen_N);
  // L3: prior matching at T: x0 scaled by sqrt(ab_{T-1}) should sit at the prior's mean m.
  auto prior_B = prior_loss_B(noised.x0_BLC, m_C.defined() && o.forward.soft_absorbing ? m_C : torch::Tensor(),
                              s.sqrt_alphas_cumprod.back(), chosen_BL);

  // The predicted x0's cross-entropy against the tokens, on target positions: the logits of the
  // softmax head, or the rounding head on the regressed x0 (Difformer's anchor loss).
  torch::Tensor x0_ce_B = torch::zeros({B}, mse_B.options());
  if (o.x0_ce_weight > 0) {
    const torch::Tensor logits_NV = out.x0_logits_NV.defined()
                                        ? out.x0_logits_NV
                                        : model->logits(chosen_rows(out.x0_BLC, batch.trg_mask_BL, batch.trg_rows_N));
    x0_ce_B = rounding_loss_B(logits_NV, batch.ids_BL, batch.trg_mask_BL, batch.trg_rows_N);
  }
  // The length head: the number of target tokens before EOS, from the source alone.
  torch::Tensor length_B = torch::zeros({B}, mse_B.options());
  if (o.length_weight > 0 && model->has_length_head()) {
    const torch::Tensor logits_BT = model->length_logits(emb_BLC, batch.key_mask_BL & batch.trg_mask_BL.logical_not());
    const torch::Tensor target_B = batch.trg_len_B.to(device).clamp(0, logits_BT.size(1) - 1);
    length_B = torch::nn::functional::cross_entropy(
        at_least_fp32(logits_BT), target_B, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  }
  // The rewrite head: whether the row's target is a rewrite (started from its packed source), from the
  // source alone; a batch without rewrites has no compact rows. Without the head the term is not logged.
  torch::Tensor rewrite_B;
  if (o.rewrite_weight > 0 && model->has_rewrite_head()) {
    const torch::Tensor logits_B =
        at_least_fp32(model->rewrite_logits(emb_BLC, batch.key_mask_BL & batch.trg_mask_BL.logical_not()));
    const torch::Tensor target_B = batch.compact_start_B.defined()
                                       ? batch.compact_start_B.to(device, logits_B.scalar_type())
                                       : torch::zeros({B}, logits_B.options());
    rewrite_B = torch::binary_cross_entropy_with_logits(logits_B, target_B, {}, {}, at::Reduction::None);
  }

  LossTerms terms;
  auto loss_B = o.mse_weight * mse_B + o.rounding_weight * rounding_B + o.prior_weight * prior_B;
  if (o.x0_ce_weight > 0) loss_B = loss_B + o.x0_ce_weight * x0_ce_B;
  // L4: |m| keeps the absorbing vector from drifting away (DiffuSeq-v2's reg_rate).
  auto absorb = m_C.defined() && o.forward.soft_absorbing ? at_least_fp32(m_C).norm() : torch::zeros({}, loss_B.options());
  // L5: the importance-weighted mean, plus the regulariser and the MoE losses.
  terms.total = (loss_B * to_device_async(weight_B, device, loss_B.scalar_type())).mean() + o.absorb_reg * absorb +
                out.moe_loss.to(loss_B.scalar_type());
  if (o.length_weight > 0) terms.total = terms.total + o.length_weight * length_B.mean();
  if (rewrite_B.defined()) terms.total = terms.total + o.rewrite_weight * rewrite_B.mean();
  terms.loss_B = loss_B.detach();
  terms.mse = mse_B.mean().detach();
  terms.rounding = rounding_B.mean().detach();
  terms.prior = prior_B.mean().detach();
  terms.x0_ce = x0_ce_B.mean().detach();
  terms.length = length_B.mean().detach();
  if (rewrite_B.defined()) terms.rewrite = rewrite_B.mean().detach();
  terms.absorb = absorb.detach();
  terms.moe_aux = out.aux_loss.detach();
  terms.moe_z = out.z_loss.detach();
  terms.dropped = out.dropped;
  return terms;
}

}  // namespace mds::diffusion
