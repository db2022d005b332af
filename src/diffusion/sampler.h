// Samplers: from noise on the target positions to x0, with the source re-anchored after every model
// call and every update (docs/math.md eq. P1-P6).
//
// Dimensions: B batch, L length, C embedding dim.
//
//   dpm++2m, dpm++3m  DPM-Solver++ multistep (data prediction), discrete-time schedule through
//                     lambda interpolation, time_uniform / logSNR / time_quadratic grids,
//                     lower_order_final; model time (t - 1/N)*1000 (upstream) or t*1000 (DiffuSeq-v2)
//   ddim              DDIM (eta = 0) on a correctly respaced subsequence of the T steps
//   ancestral         posterior sampling with fixed-large variance on a respaced subsequence
//                     (all T steps when sample.steps >= T), optional discrete absorbing noise
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/config.h"
#include "diffusion/sampler_options.h"
#include "diffusion/schedule.h"

namespace mds::diffusion {

// The denoiser as samplers see it: x0 prediction for x_BLC at (float) model time model_t_B.
using X0Predictor = std::function<at::Tensor(const at::Tensor& x_BLC, const at::Tensor& model_t_B)>;

struct SampleInputs {
  at::Tensor anchor_BLC;      // embeddings of the packed ids: the source part is kept as is
  at::Tensor trg_mask_BL;     // bool: positions to generate
  at::Tensor absorbing_C;     // m, or undefined (x_T then starts at N(0, I))
  at::Tensor embedding_VC;    // word embedding, for clamping
  at::Tensor start_x0_BLC;    // with options.start_time < 1: the x0 the solver starts from (target positions)
  // With options.start_time < 1 and m: bool [B, L], the positions that start at m. Undefined: each
  // target token jumps with probability absorb_rate * sigma (options.start_jumps), as training's noise.
  at::Tensor start_jump_BL;
};

// Starts from x_T = m + N(0, I) on target positions (anchor elsewhere), or with options.start_time
// below 1 from inputs.start_x0_BLC noised to that time, and returns x0 [B, L, C].
at::Tensor sample(const NoiseSchedule& schedule, const X0Predictor& predict, const SampleInputs& inputs,
                  const SamplerOptions& options, at::Generator generator);

// The same, from a given x_T (tests; resuming). x_T's source part is replaced by the anchor.
at::Tensor sample_from(const NoiseSchedule& schedule, const X0Predictor& predict, const SampleInputs& inputs,
                       const SamplerOptions& options, at::Tensor x_T_BLC, at::Generator generator);

// Nearest embedding row of every x position (squared L2), as DiffuSeq's rounding: [B, L, C].
at::Tensor clamp_to_embeddings(const at::Tensor& x_BLC, const at::Tensor& embedding_VC);

}  // namespace mds::diffusion
