#include "diffusion/loss.h"

#include <torch/torch.h>

namespace mds {

LossTerms diffusion_loss(Denoiser& model, const BatchTensors& batch, const NoiseSchedule& s, const torch::Tensor& t_B,
                         const torch::Tensor& weight_B, const LossOptions& o, at::Generator gen) {
  const auto device = batch.ids_BL.device();
  const auto B = batch.ids_BL.size(0);
  auto emb_BLE = model->embed(batch.ids_BL);
  const torch::Tensor& m_E = model->absorbing();
  Noised noised = noise_batch(s, emb_BLE, t_B, batch.trg_mask_BL, m_E, o.forward, gen);

  auto t_dev = t_B.to(device);
  auto model_t_B = t_dev.to(torch::kFloat) * (1000.0 / static_cast<double>(s.steps));
  DenoiserOutput out = model->forward(noised.x_t_BLE, model_t_B, batch.key_mask_BL, batch.global_mask_BL);

  auto chosen_BL = (o.target_only ? batch.trg_mask_BL : batch.key_mask_BL).to(emb_BLE.scalar_type());
  auto count_B = chosen_BL.sum(1).clamp_min(1.0);
  auto masked_mean = [&](const torch::Tensor& per_token_BL) { return (per_token_BL * chosen_BL).sum(1) / count_B; };

  // L1: x0 regression; at t = 0 the target is the clean embedding itself (DiffuSeq).
  auto target_BLE = torch::where((t_dev == 0).view({B, 1, 1}), emb_BLE, noised.x0_BLE);
  auto mse_B = masked_mean((target_BLE - out.x0_BLE).pow(2).mean(-1));
  // L2: rounding cross-entropy of the noisy x0 against the ids, on the chosen positions only: the
  // [positions x V] logits are the largest tensor of a small model's step.
  auto chosen_idx = chosen_BL.reshape({-1}).nonzero().squeeze(1);
  auto x0_sel = noised.x0_BLE.reshape({-1, noised.x0_BLE.size(-1)}).index_select(0, chosen_idx);
  auto ce_sel = torch::nn::functional::cross_entropy(
      model->logits(x0_sel).to(torch::kFloat), batch.ids_BL.reshape({-1}).index_select(0, chosen_idx),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  auto ce_BL = torch::zeros({chosen_BL.numel()}, ce_sel.options()).index_add(0, chosen_idx, ce_sel).view({B, -1});
  auto rounding_B = masked_mean(ce_BL.to(emb_BLE.scalar_type()));
  // L3: prior matching at T: x0 scaled by sqrt(ab_{T-1}) should sit at the prior's mean m.
  auto centred_BLE = m_E.defined() && o.forward.soft_absorbing ? noised.x0_BLE - m_E.view({1, 1, -1}) : noised.x0_BLE;
  auto prior_B = masked_mean((s.sqrt_alphas_cumprod.back() * centred_BLE).pow(2).mean(-1));

  LossTerms terms;
  auto loss_B = mse_B + o.rounding_weight * rounding_B + o.prior_weight * prior_B;
  // L4: |m| keeps the absorbing vector from drifting away (DiffuSeq-v2's reg_rate).
  auto absorb = m_E.defined() && o.forward.soft_absorbing ? m_E.norm() : torch::zeros({}, loss_B.options());
  // L5: the importance-weighted mean, plus the regulariser and the MoE losses.
  terms.total = (loss_B * weight_B.to(device, loss_B.scalar_type())).mean() + o.absorb_reg * absorb +
                out.moe_loss.to(loss_B.scalar_type());
  terms.loss_B = loss_B.detach();
  terms.mse = mse_B.mean().detach();
  terms.rounding = rounding_B.mean().detach();
  terms.prior = prior_B.mean().detach();
  terms.absorb = absorb.detach();
  terms.moe_aux = out.aux_loss.detach();
  terms.moe_z = out.z_loss.detach();
  terms.dropped = out.dropped;
  return terms;
}

}  // namespace mds
