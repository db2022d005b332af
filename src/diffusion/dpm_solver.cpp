// DPM-Solver++ multistep with data prediction (Lu et al. 2022; LuChengTHU/dpm-solver
// dpm_solver_pytorch.py), on the discrete schedule seen through lambda interpolation
// (docs/math.md eq. P1-P4; algorithms.md 5.2-5.4).
//
// Dimensions: B batch, L length, C embedding dim; N = T discrete steps; M solver steps.
//
// Scalars (alpha, sigma, lambda, the phi's) are float64; tensor updates run in x's dtype. The
// updates act on y = x - m (the soft absorbing process is VP around m), the source is re-anchored
// after every model call and every update, and the final step makes no model call (as upstream).
#include "diffusion/dpm_solver.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mds::diffusion::detail {

namespace {

// interpolate_fn of dpm-solver: piecewise linear through (xp, yp), xp increasing; outside
// [xp_0, xp_{K-1}] the first / last segment is extrapolated.
double interpolate(double x, const std::vector<double>& xp, const std::vector<double>& yp) {
  const std::size_t K = xp.size();
  if (K == 1) return yp[0];
  std::size_t j;  // segment [xp_j, xp_{j+1}]
  if (x <= xp[0]) {
    j = 0;
  } else if (x >= xp[K - 1]) {
    j = K - 2;
  } else {
    j = static_cast<std::size_t>(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
    j = std::min(j, K - 2);
  }
  return yp[j] + (x - xp[j]) * (yp[j + 1] - yp[j]) / (xp[j + 1] - xp[j]);
}

// torch.linspace(start, end, n + 1) in float64: both ends exact.
std::vector<double> linspace(double start, double end, int64_t n) {
  std::vector<double> out(static_cast<std::size_t>(n + 1));
  const double step = (end - start) / static_cast<double>(n);
  for (int64_t k = 0; k <= n; ++k) {
    out[static_cast<std::size_t>(k)] =
        2 * k < n ? start + step * static_cast<double>(k) : end - step * static_cast<double>(n - k);
  }
  return out;
}

}  // namespace

DiscreteVP::DiscreteVP(const NoiseSchedule& schedule) {
  const std::size_t N = schedule.betas.size();
  MDS_CHECK(N >= 2, "DPM-Solver++: the schedule needs at least 2 steps, got ", N);
  t_array_.resize(N);
  log_alpha_array_.resize(N);
  double log_ab = 0.0;
  for (std::size_t n = 0; n < N; ++n) {
    log_ab += std::log(1.0 - schedule.betas[n]);  // cumulative, as the reference's cumsum
    log_alpha_array_[n] = 0.5 * log_ab;
    t_array_[n] = static_cast<double>(n + 1) / static_cast<double>(N);
  }
  flipped_log_alpha_.assign(log_alpha_array_.rbegin(), log_alpha_array_.rend());
  flipped_t_.assign(t_array_.rbegin(), t_array_.rend());
}

double DiscreteVP::log_alpha(double t) const { return interpolate(t, t_array_, log_alpha_array_); }
double DiscreteVP::alpha(double t) const { return std::exp(log_alpha(t)); }
double DiscreteVP::sigma(double t) const { return std::sqrt(-std::expm1(2.0 * log_alpha(t))); }
double DiscreteVP::lambda(double t) const {
  const double la = log_alpha(t);
  return la - 0.5 * std::log(-std::expm1(2.0 * la));
}

double DiscreteVP::inverse_lambda(double lambda) const {
  // log alpha = -1/2 logaddexp(0, -2 lambda), computed stably.
  const double a = -2.0 * lambda;
  const double logaddexp = std::max(a, 0.0) + std::log1p(std::exp(-std::fabs(a)));
  return interpolate(-0.5 * logaddexp, flipped_log_alpha_, flipped_t_);
}

std::vector<double> DiscreteVP::time_steps(const std::string& skip_type, double t_start,
                                           double t_end, int64_t m) const {
  MDS_CHECK(m >= 1, "DPM-Solver++: steps must be >= 1, got ", m);
  if (skip_type == "time_uniform") return linspace(t_start, t_end, m);
  if (skip_type == "logSNR") {
    std::vector<double> lambdas = linspace(lambda(t_start), lambda(t_end), m);
    std::vector<double> out(lambdas.size());
    for (std::size_t k = 0; k < lambdas.size(); ++k) out[k] = inverse_lambda(lambdas[k]);
    return out;
  }
  if (skip_type == "time_quadratic") {
    std::vector<double> out = linspace(std::sqrt(t_start), std::sqrt(t_end), m);
    for (double& t : out) t = t * t;
    return out;
  }
  fail("sampler: unknown skip_type \"", skip_type,
       "\" (known: time_uniform, logSNR, time_quadratic)");
}

namespace {

// One multistep update from t_prev.back() to t (P3), of order = D_list.size() (1, 2 or 3), on
// centred tensors: y = x - m, D = x0 - m. Returns y at t.
at::Tensor multistep_update(const DiscreteVP& vp, const at::Tensor& y_BLC,
                            const std::vector<at::Tensor>& D_list,
                            const std::vector<double>& t_prev, double t) {
  const std::size_t order = D_list.size();
  const double t0 = t_prev.back();
  const double lambda_t = vp.lambda(t), lambda_0 = vp.lambda(t0);
  const double sigma_t = vp.sigma(t), sigma_0 = vp.sigma(t0), alpha_t = vp.alpha(t);
  const double h = lambda_t - lambda_0;
  const double phi_1 = std::expm1(-h);
  const at::Tensor& D0 = D_list[order - 1];
  // First order, x_t = (sigma_t / sigma_s) x_s - alpha_t phi_1 D_s  (= DDIM, eta = 0).
  at::Tensor out = (sigma_t / sigma_0) * y_BLC - (alpha_t * phi_1) * D0;
  if (order == 1) return out;

  const double lambda_1 = vp.lambda(t_prev[order - 2]);
  const double h_0 = lambda_0 - lambda_1;
  const double r0 = h_0 / h;
  const at::Tensor D1_0 = (1.0 / r0) * (D0 - D_list[order - 2]);
  if (order == 2) {
    // 2M, solver_type "dpmsolver": - 1/2 alpha_t phi_1 D1_0.
    return out - (0.5 * (alpha_t * phi_1)) * D1_0;
  }

  const double lambda_2 = vp.lambda(t_prev[order - 3]);
  const double h_1 = lambda_1 - lambda_2;
  const double r1 = h_1 / h;
  const at::Tensor D1_1 = (1.0 / r1) * (D_list[order - 2] - D_list[order - 3]);
  const at::Tensor D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1);
  const at::Tensor D2 = (1.0 / (r0 + r1)) * (D1_0 - D1_1);
  const double phi_2 = phi_1 / h + 1.0;
  const double phi_3 = phi_2 / h - 0.5;
  // 3M: + alpha_t phi_2 D1 - alpha_t phi_3 D2.
  return out + (alpha_t * phi_2) * D1 - (alpha_t * phi_3) * D2;
}

}  // namespace

at::Tensor dpm_solver_pp(const SamplerContext& ctx, at::Tensor x_BLC, int64_t order) {
  MDS_CHECK(order >= 1 && order <= 3, "DPM-Solver++: order must be 1, 2 or 3, got ", order);
  const DiscreteVP vp(ctx.schedule);
  const int64_t N = vp.total_n();
  const int64_t M = ctx.options.steps;
  MDS_CHECK(M >= 1, "sampler: sample.steps must be >= 1, got ", M);
  order = std::min(order, M);  // upstream asserts steps >= order; fewer steps use lower orders
  const std::string& mapping = ctx.options.time_mapping;
  MDS_CHECK(mapping == "upstream" || mapping == "v2", "sampler: unknown time_mapping \"", mapping,
            "\" (known: upstream, v2)");
  const double t_end = 1.0 / static_cast<double>(N);  // t_0 = 1/N: alpha_bar_0, index 0
  // P4: upstream (t - 1/N) 1000 = n 1000 / N at the grid points t = (n + 1)/N; DiffuSeq-v2 t 1000.
  auto model_time = [&](double t) {
    return mapping == "upstream" ? (t - t_end) * 1000.0 : t * 1000.0;
  };
  MDS_CHECK(ctx.options.start_time > t_end && ctx.options.start_time <= 1.0, "sampler: sample.start_time must be in (",
            t_end, ", 1], got ", ctx.options.start_time);
  const std::vector<double> ts = vp.time_steps(ctx.options.skip_type, ctx.options.start_time, t_end, M);

  auto predict_D = [&](const at::Tensor& x, double t) {
    return ctx.centre(ctx.predict_x0(x, model_time(t)));
  };
  auto update = [&](const at::Tensor& x, const std::vector<at::Tensor>& D,
                    const std::vector<double>& t_prev, double t) {
    return ctx.anchor(ctx.uncentre(multistep_update(vp, ctx.centre(x), D, t_prev, t)));
  };

  // P3 driver: warm up with lower orders, then order-`order` steps with a rolling history.
  std::vector<double> t_prev = {ts[0]};
  std::vector<at::Tensor> D_prev = {predict_D(x_BLC, ts[0])};
  for (int64_t k = 1; k < order; ++k) {
    x_BLC = update(x_BLC, D_prev, t_prev, ts[static_cast<std::size_t>(k)]);
    t_prev.push_back(ts[static_cast<std::size_t>(k)]);
    D_prev.push_back(predict_D(x_BLC, t_prev.back()));
  }
  for (int64_t k = order; k <= M; ++k) {
    const double t = ts[static_cast<std::size_t>(k)];
    // lower_order_final: with fewer than 10 steps the last steps drop to lower orders.
    const int64_t step_order = M < 10 ? std::min(order, M + 1 - k) : order;
    const std::size_t skip = D_prev.size() - static_cast<std::size_t>(step_order);
    const std::vector<at::Tensor> D(D_prev.begin() + static_cast<std::ptrdiff_t>(skip),
                                    D_prev.end());
    const std::vector<double> tp(t_prev.begin() + static_cast<std::ptrdiff_t>(skip), t_prev.end());
    x_BLC = update(x_BLC, D, tp, t);
    // Shift the history; no model call after the final step.
    t_prev.erase(t_prev.begin());
    t_prev.push_back(t);
    D_prev.erase(D_prev.begin());
    D_prev.push_back(k < M ? predict_D(x_BLC, t) : at::Tensor());
  }
  return x_BLC;
}

}  // namespace mds::diffusion::detail
