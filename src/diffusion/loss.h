// The training loss of one batch (docs/math.md eq. L1-L5), every term reported separately.
//
// Dimensions: B batch, L length, C embedding dim, V vocabulary, N chosen positions.
//
//   mse      = mean over the chosen positions of |target - f(x_t, t)|^2 / C,  target = x0 (t > 0) or emb (t = 0)
//   rounding = mean over the chosen positions of CE(logits(x0), ids)       (on x0, as DiffuSeq's code)
//   prior    = mean over the chosen positions of |sqrt(ab_{T-1}) (x0 - m)|^2 / C   (the tT term)
//   x0_ce    = mean over target positions of CE(logits(z), ids)   (z: x0_hat, or the softmax logits)
//   length   = CE(length head, target length)                     (data.target_length = "predict")
//   rewrite  = BCE(rewrite head, the row is a rewrite)              (data.canvas_rewrite_compact)
//   loss_B   = mse_weight * mse + rounding_weight * rounding + prior_weight * prior
//              + x0_ce_weight * x0_ce                                    (per example)
//   total    = mean_B(importance_weight_B * loss_B) + length_weight * mean_B(length)
//              + rewrite_weight * mean_B(rewrite)
//              + absorb_reg * |m| + MoE losses
// Self-conditioning (self_condition_prob > 0): with that probability per step, x0 is first estimated
// without gradient from the same x_t and fed back as the model's self-conditioning input.
// Chosen positions: the target region (default), or every non-padding position (loss.positions = "all",
// DiffuSeq's behaviour).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/config.h"
#include "diffusion/forward_process.h"
#include "diffusion/schedule.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"

namespace mds::diffusion {

struct LossOptions {
  bool target_only = true;
  double rounding_weight = 1.0, prior_weight = 1.0, absorb_reg = 0.01;
  double mse_weight = 1.0, x0_ce_weight = 0.0, length_weight = 0.0, rewrite_weight = 0.0;
  double self_condition_prob = 0.0;  // 0: never (a model without self-conditioning)
  // The share of examples noised from the source instead of the target (train_step draws them), and
  // the share of the diffusion time below which their t lies.
  double source_start_prob = 0.0, source_start_time = 0.1;
  // Their target position j starts from source token j / canvas_stride (data.target_canvas).
  int64_t canvas_stride = 1;
  ForwardOptions forward;
};

// loss.* (positions and weights; loss.length_weight with data.target_length = "predict",
// loss.rewrite_weight with data.canvas_rewrite_compact),
// train.self_condition_prob (with model.self_condition), train.source_start_*, data.target_canvas,
// diffusion.soft_absorbing and diffusion.absorb_rate.
LossOptions loss_options_from_config(const Config& config);

struct LossTerms {
  at::Tensor total;   // scalar to differentiate
  at::Tensor loss_B;  // per-example diffusion loss, detached (for the loss-aware t-sampler)
  // Detached scalars for logging.
  at::Tensor mse, rounding, prior, x0_ce, length, absorb, moe_aux, moe_z;
  at::Tensor rewrite;  // undefined without a rewrite head (logged as 0)
  at::Tensor dropped;  // int64 0-dim on the device: MoE assignments dropped by a capacity
};

// The per-example terms L1-L3 (means over the chosen positions of each row, bool chosen_BL), from
// tensors of any floating dtype: bf16 model outputs under autocast are promoted, and each term is
// float32 (float64 for float64 inputs).
//   mse_loss_B:      |target - x0_hat|^2 / C
//   rounding_loss_B: CE(logits, ids); logits_NV holds the rows of chosen_rows(x0, chosen_BL) only
//   prior_loss_B:    |sqrt_ab_last (x0 - m)|^2 / C; m_C undefined = 0
at::Tensor mse_loss_B(const at::Tensor& x0_hat_BLC, const at::Tensor& target_BLC, const at::Tensor& chosen_BL);
// rows_N (optional): chosen_BL's flat true indices where the caller has them (BatchTensors), else found
// from the mask (nonzero: a device sync).
at::Tensor rounding_loss_B(const at::Tensor& logits_NV, const at::Tensor& ids_BL, const at::Tensor& chosen_BL,
                           const at::Tensor& rows_N = {});
at::Tensor prior_loss_B(const at::Tensor& x0_BLC, const at::Tensor& m_C, double sqrt_ab_last,
                        const at::Tensor& chosen_BL);
// The chosen positions of x_BLC as rows [N, C], in row-major (b, l) order.
at::Tensor chosen_rows(const at::Tensor& x_BLC, const at::Tensor& chosen_BL, const at::Tensor& rows_N = {});

// from_source_B (bool [B] on the host, optional): rows whose target positions are noised from the
// source-aligned x0 (model::source_aligned_x0) rather than from the target; the loss still asks for the
// target.
LossTerms diffusion_loss(model::Denoiser& model, const model::BatchTensors& batch, const NoiseSchedule& schedule,
                         const at::Tensor& t_B, const at::Tensor& weight_B, const LossOptions& options,
                         at::Generator generator, const at::Tensor& from_source_B = {});

}  // namespace mds::diffusion
