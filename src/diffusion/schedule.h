// The discrete noise schedule and everything derived from it, in float64 (docs/math.md eq. S1-S3).
//
// alpha_bar(tau) = 1 - sqrt(tau + 1e-4)                      (DiffuSeq's "sqrt" schedule)
// beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), 0.999),  i = 0..T-1
// alphas_cumprod[n] = prod_{i<=n} (1 - beta_i)
// Index t = 0 already means one step of noise; the model sees time t * 1000 / T.
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

  static NoiseSchedule make(const std::string& name, int64_t steps);  // name: "sqrt"
  // diffusion.schedule and diffusion.steps.
  static NoiseSchedule from_config(const Config& config);

  double model_time(double t) const { return t * 1000.0 / static_cast<double>(steps); }
  // values[t_B] as a float tensor [B] on t_B's device (t_B int64).
  static at::Tensor gather(const std::vector<double>& values, const at::Tensor& t_B, at::ScalarType dtype);
};

}  // namespace mds::diffusion
