// The discrete noise schedule (docs/math.md eq. S1-S3), in float64 and in the same order of
// operations as improved-diffusion / DiffuSeq (gaussian_diffusion.py), so that the arrays match the
// reference's numpy values.
//
// Dimensions: B batch; T steps (an index t in [0, T)).
#include "diffusion/schedule.h"

#include "core/config.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mds::diffusion {

namespace {

// S1: DiffuSeq's "sqrt" alpha_bar(tau) = 1 - sqrt(tau + 1e-4).
double sqrt_alpha_bar(double tau) { return 1.0 - std::sqrt(tau + 0.0001); }

// betas_for_alpha_bar(T, alpha_bar, max_beta = 0.999).
std::vector<double> betas_for_alpha_bar(int64_t T, double (*alpha_bar)(double), double max_beta) {
  std::vector<double> betas(static_cast<std::size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    const double t1 = static_cast<double>(i) / static_cast<double>(T);
    const double t2 = static_cast<double>(i + 1) / static_cast<double>(T);
    betas[static_cast<std::size_t>(i)] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), max_beta);
  }
  return betas;
}

}  // namespace

NoiseSchedule NoiseSchedule::from_config(const Config& c) {
  return make(c.get_string("diffusion.schedule"), c.get_int("diffusion.steps"), c.get_float("diffusion.noise_factor"));
}

NoiseSchedule NoiseSchedule::make(const std::string& name, int64_t steps, double noise_factor) {
  MDS_CHECK(steps >= 1, "noise schedule: diffusion steps must be >= 1, got ", steps);
  MDS_CHECK(noise_factor > 0, "noise schedule: the noise factor must be > 0, got ", noise_factor);
  NoiseSchedule s;
  s.steps = steps;
  if (name == "sqrt") {
    s.betas = betas_for_alpha_bar(steps, sqrt_alpha_bar, 0.999);  // S1
  } else {
    fail("noise schedule: unknown schedule \"", name, "\" (known: sqrt)");
  }
  if (noise_factor != 1.0) {
    // SNR / F^2 at every step, through alpha_bar; the betas that give it.
    const double f2 = noise_factor * noise_factor;
    double cumprod = 1.0, previous = 1.0;
    for (double& beta : s.betas) {
      cumprod *= 1.0 - beta;
      const double scaled = cumprod / (f2 - (f2 - 1.0) * cumprod);
      beta = 1.0 - scaled / previous;
      previous = scaled;
    }
  }

  const std::size_t T = static_cast<std::size_t>(steps);
  s.alphas_cumprod.resize(T);
  s.alphas_cumprod_prev.resize(T);
  s.sqrt_alphas_cumprod.resize(T);
  s.sqrt_one_minus_alphas_cumprod.resize(T);
  s.posterior_variance.resize(T);
  s.posterior_mean_coef1.resize(T);
  s.posterior_mean_coef2.resize(T);
  double cumprod = 1.0;
  for (std::size_t t = 0; t < T; ++t) {
    const double beta = s.betas[t];
    const double alpha = 1.0 - beta;
    const double ab_prev = cumprod;  // alphas_cumprod_prev = [1, ab_0 .. ab_{T-2}]
    cumprod *= alpha;  // S2: ab_t = prod_{i<=t} (1 - beta_i), left to right as np.cumprod
    const double ab = cumprod;
    s.alphas_cumprod[t] = ab;
    s.alphas_cumprod_prev[t] = ab_prev;
    s.sqrt_alphas_cumprod[t] = std::sqrt(ab);
    s.sqrt_one_minus_alphas_cumprod[t] = std::sqrt(1.0 - ab);
    // S3: the posterior q(x_{t-1} | x_t, x0) = N(coef1 x0 + coef2 x_t, posterior_variance).
    s.posterior_variance[t] = beta * (1.0 - ab_prev) / (1.0 - ab);
    s.posterior_mean_coef1[t] = beta * std::sqrt(ab_prev) / (1.0 - ab);
    s.posterior_mean_coef2[t] = (1.0 - ab_prev) * std::sqrt(alpha) / (1.0 - ab);
  }
  return s;
}

at::Tensor NoiseSchedule::gather(const std::vector<double>& values, const at::Tensor& t_B,
                                 at::ScalarType dtype) {
  MDS_CHECK(t_B.defined() && t_B.dim() == 1, "NoiseSchedule::gather: t_B must be [B], got ",
            t_B.defined() ? t_B.sizes() : at::IntArrayRef{});
  MDS_CHECK(t_B.scalar_type() == at::kLong, "NoiseSchedule::gather: t_B must be int64, got ",
            t_B.scalar_type());
  const auto n = static_cast<int64_t>(values.size());
  at::Tensor t_cpu_B = t_B.cpu();
  if (t_cpu_B.numel() > 0) {
    const int64_t lo = t_cpu_B.min().item<int64_t>(), hi = t_cpu_B.max().item<int64_t>();
    MDS_CHECK(lo >= 0 && hi < n, "NoiseSchedule::gather: t out of range [0, ", n, "): [", lo, ", ",
              hi, "]");
  }
  // Index in float64 on the CPU, round once to dtype: the same value on every device.
  at::Tensor table_T = at::from_blob(const_cast<double*>(values.data()), {n},
                                     at::TensorOptions().dtype(at::kDouble));
  return table_T.index_select(0, t_cpu_B).to(dtype).to(t_B.device());
}

}  // namespace mds::diffusion
