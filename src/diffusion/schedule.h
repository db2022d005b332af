// The discrete noise schedule and everything derived from it, in float64 (docs/math.md eq. S1-S3).
//
// alpha_bar(tau) = 1 - sqrt(tau + 1e-4)                      (DiffuSeq's "sqrt" schedule)
// beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), 0.999),  i = 0..T-1
// alphas_cumprod[n] = prod_{i<=n} (1 - beta_i)
// Index t = 0 already means one step of noise; the model sees time t * 1000 / T.
// A noise factor F != 1 (Difformer, algorithms.md 10.4) divides the signal-to-noise ratio by F^2:
//   alpha_bar'(t) = alpha_bar(t) / (F^2 - (F^2 - 1) alpha_bar(t)),  beta'_i = 1 - alpha_bar'_i / alpha_bar'_{i-1}
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace mds::diffusion {

struct NoiseSchedule {
  int64_t steps = 0;  // T
  std::vector<double> betas, alphas_cumprod, alphas_cumprod_prev;
  std::vector<double> sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod;
  std::vector<double> posterior_variance, posterior_mean_coef1, posterior_mean_coef2;

  static NoiseSchedule make(const std::string& name, int64_t steps, double noise_factor = 1.0);  // name: "sqrt"
  // diffusion.schedule, diffusion.steps and diffusion.noise_factor.
  static NoiseSchedule from_config(const Config& config);

  double model_time(double t) const { return t * 1000.0 / static_cast<double>(steps); }
  // values[t_B] as a float tensor [B] on t_B's device (t_B int64).
  static at::Tensor gather(const std::vector<double>& values, const at::Tensor& t_B, at::ScalarType dtype);
};

}  // namespace mds::diffusion
