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
#include "diffusion/schedule.h"

namespace mds::diffusion {

// The denoiser as samplers see it: x0 prediction for x_BLC at (float) model time model_t_B.
using X0Predictor = std::function<at::Tensor(const at::Tensor& x_BLC, const at::Tensor& model_t_B)>;

struct SamplerOptions {
  std::string sampler = "dpm++2m";  // dpm++2m | dpm++3m | ddim | ancestral
  int64_t steps = 10;
  std::string skip_type = "time_uniform";  // DPM-Solver++ grid
  std::string time_mapping = "upstream";   // upstream | v2
  bool clamp = false;                      // replace x0 predictions by the nearest embedding row
  bool discrete_noise = false;             // ancestral: DiffuSeq-v2 jumps to m
  double absorb_rate = 0.5;                // gamma for discrete_noise and a start below 1
  // DPM-Solver++ only: the share of the diffusion time the solver starts at. 1 = from noise; below 1
  // from SampleInputs::start_x0_BLC noised to that time (SDEdit), by the forward process: a target
  // token jumps to m with probability absorb_rate * sigma (start_jumps), and the rest get
  // m + alpha (x0 - m) + sigma eps.
  double start_time = 1.0;
  bool start_jumps = true;  // false: no token jumps to m at the start (the given x0 kept whole)
};

// sample.sampler, sample.steps, sample.skip_type, sample.time_mapping, sample.clamp,
// sample.discrete_noise, sample.start_time, sample.start_jumps and diffusion.absorb_rate.
SamplerOptions sampler_options_from_config(const Config& config);

struct SampleInputs {
  at::Tensor anchor_BLC;      // embeddings of the packed ids: the source part is kept as is
  at::Tensor trg_mask_BL;     // bool: positions to generate
  at::Tensor absorbing_C;     // m, or undefined (x_T then starts at N(0, I))
  at::Tensor embedding_VC;    // word embedding, for clamping
  at::Tensor start_x0_BLC;    // with options.start_time < 1: the x0 the solver starts from (target positions)
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
