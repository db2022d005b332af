// The forward process: partial noising of the target positions only, with the soft absorbing state
// (docs/math.md eq. F1-F3). The source is the anchor and is never noised.
//
// Dimensions: B batch, L length, C embedding dim.
//
//   x0   = emb + sigma_0 * eps0                                              (F1, DiffuSeq)
//   x_t  = m + sqrt(ab_t) (x0 - m) + sqrt(1 - ab_t) eps        on target positions   (F2)
//   with probability gamma * sqrt(1 - ab_t) a target token jumps to x_t = m          (F3)
//   x_t  = x0                                                  on the source
// With the soft absorbing state off, m = 0 and there are no jumps (plain DiffuSeq).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "diffusion/schedule.h"

namespace mds::diffusion {

struct ForwardOptions {
  bool soft_absorbing = true;
  double absorb_rate = 0.5;  // gamma; 0 = no discrete jumps
};

struct Noised {
  at::Tensor x0_BLC;        // emb + sigma_0 noise: the regression target for t > 0
  at::Tensor x_t_BLC;       // the model's input
  at::Tensor absorbed_BL;   // bool: target tokens that jumped to m
};

// emb_BLC: word embeddings of the packed ids; t_B: int64 steps; absorbing_C: m (undefined when off).
Noised noise_batch(const NoiseSchedule& schedule, const at::Tensor& emb_BLC, const at::Tensor& t_B,
                   const at::Tensor& trg_mask_BL, const at::Tensor& absorbing_C, const ForwardOptions& options,
                   at::Generator generator);

}  // namespace mds::diffusion
