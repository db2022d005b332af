// The training loss of one batch (docs/math.md eq. L1-L5), every term reported separately.
//
//   mse      = mean over the chosen positions of |target - f(x_t, t)|^2 / E,  target = x0 (t > 0) or emb (t = 0)
//   rounding = mean over the chosen positions of CE(logits(x0), ids)       (on x0, as DiffuSeq's code)
//   prior    = mean over the chosen positions of |sqrt(ab_{T-1}) (x0 - m)|^2 / E   (the tT term)
//   loss_B   = mse + rounding_weight * rounding + prior_weight * prior      (per example)
//   total    = mean_B(importance_weight_B * loss_B) + absorb_reg * |m| + MoE losses
// Chosen positions: the target region (default), or every non-padding position (loss.positions = "all",
// DiffuSeq's behaviour).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "diffusion/forward_process.h"
#include "diffusion/schedule.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"

namespace mds {

struct LossOptions {
  bool target_only = true;
  double rounding_weight = 1.0, prior_weight = 1.0, absorb_reg = 0.01;
  ForwardOptions forward;
};

struct LossTerms {
  at::Tensor total;   // scalar to differentiate
  at::Tensor loss_B;  // per-example diffusion loss, detached (for the loss-aware t-sampler)
  // Detached scalars for logging.
  at::Tensor mse, rounding, prior, absorb, moe_aux, moe_z;
  int64_t dropped = 0;  // MoE assignments dropped by a capacity
};

LossTerms diffusion_loss(Denoiser& model, const BatchTensors& batch, const NoiseSchedule& schedule,
                         const at::Tensor& t_B, const at::Tensor& weight_B, const LossOptions& options,
                         at::Generator generator);

}  // namespace mds
