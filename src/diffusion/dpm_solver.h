// Private to src/diffusion (and its tests): what sampler.cpp and dpm_solver.cpp share, and the
// continuous-time view of the discrete schedule that DPM-Solver++ needs (docs/math.md eq. P1-P4).
//
// Dimensions: B batch, L length, C embedding dim; N = T discrete steps; M solver steps.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "diffusion/sampler.h"
#include "diffusion/schedule.h"

namespace mds::diffusion::detail {

// NoiseScheduleVP(schedule = 'discrete') of LuChengTHU/dpm-solver, in float64 (P1):
//   t_n = (n + 1) / N,  log alpha(t_n) = 1/2 sum_{i<=n} log(1 - beta_i),
//   log alpha(t) piecewise linear between the t_n (outer segments extrapolated),
//   sigma(t) = sqrt(1 - alpha(t)^2),  lambda(t) = log alpha(t) - log sigma(t).
class DiscreteVP {
 public:
  explicit DiscreteVP(const NoiseSchedule& schedule);

  int64_t total_n() const { return static_cast<int64_t>(t_array_.size()); }
  double log_alpha(double t) const;
  double alpha(double t) const;
  double sigma(double t) const;
  double lambda(double t) const;
  double inverse_lambda(
      double lambda) const;  // lambda -> t through log alpha = -1/2 log(1 + e^{-2 lambda})
  // P2: the M + 1 times t_T = t_start > ... > t_0 = t_end of the grid ("time_uniform", "logSNR",
  // "time_quadratic").
  std::vector<double> time_steps(const std::string& skip_type, double t_start, double t_end,
                                 int64_t m) const;

 private:
  std::vector<double> t_array_, log_alpha_array_;      // increasing t, decreasing log alpha
  std::vector<double> flipped_log_alpha_, flipped_t_;  // increasing log alpha
};

// The pieces every sampler needs: the anchor, the centre m and the wrapped predictor.
struct SamplerContext {
  const NoiseSchedule& schedule;
  const X0Predictor& predict;
  const SampleInputs& inputs;
  const SamplerOptions& options;
  at::Tensor trg_BL1;  // bool, broadcasts over C
  at::Tensor m_BLC;    // m in x's dtype and device, [1, 1, C]; undefined when there is no m (m = 0)
  at::ScalarType dtype;

  // x on target positions, the anchor elsewhere.
  at::Tensor anchor(const at::Tensor& x_BLC) const;
  // Centring: the soft-absorbing process is a plain VP process in y = x - m.
  at::Tensor centre(const at::Tensor& x_BLC) const;
  at::Tensor uncentre(const at::Tensor& y_BLC) const;
  // x0 prediction at model time model_t (float32 [B] on x's device), clamped (option), anchored.
  at::Tensor predict_x0(const at::Tensor& x_BLC, double model_t) const;
};

// DPM-Solver++ multistep (data prediction) of order 1, 2 or 3 from x_T (already anchored).
at::Tensor dpm_solver_pp(const SamplerContext& ctx, at::Tensor x_BLC, int64_t order);

}  // namespace mds::diffusion::detail
