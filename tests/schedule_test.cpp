// NoiseSchedule: the sqrt schedule's values (algorithms.md 1.4 table), the derived arrays and the
// posterior coefficients (docs/math.md eq. S1-S3), model time, gather.
//
// Dimensions: B batch; T steps.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "diffusion/schedule.h"

namespace mds {

using diffusion::NoiseSchedule;

namespace {

TEST(Schedule, SqrtValuesOfTheTable) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 2000);
  ASSERT_EQ(s.steps, 2000);
  ASSERT_EQ(s.betas.size(), 2000u);
  // beta_0 = 1 - alpha_bar(1/T) / alpha_bar(0) = 1 - (1 - sqrt(0.0006)) / (1 - sqrt(0.0001))
  //        = 1 - 0.97550510257 / 0.99 = 0.0146413105...
  EXPECT_NEAR(s.betas[0], 1.0 - (1.0 - std::sqrt(0.0006)) / 0.99, 1e-15);
  EXPECT_NEAR(s.betas[0], 0.014641, 5e-7);
  EXPECT_NEAR(s.betas[1000], 0.001207, 5e-7);
  // beta_1999 = 1 - alpha_bar(1) / alpha_bar(0.9995) ~ 1 - 0.005 / 0.0052 clips to 0.999:
  // the only clip.
  EXPECT_EQ(s.betas[1999], 0.999);
  int clipped = 0;
  for (double b : s.betas) clipped += b >= 0.999;
  EXPECT_EQ(clipped, 1);
  EXPECT_NEAR(s.alphas_cumprod[0], 0.985359, 5e-7);
  EXPECT_NEAR(s.sqrt_one_minus_alphas_cumprod[0], 0.121001, 5e-7);  // sigma_0
  EXPECT_NEAR(s.alphas_cumprod[999], 0.29578, 5e-6);
  EXPECT_NEAR(s.alphas_cumprod[1998] / 2.02e-4, 1.0, 1e-3);
  EXPECT_NEAR(s.alphas_cumprod[1999] / 2.02e-7, 1.0, 1e-3);
  // lambda = 1/2 log(ab / (1 - ab)): 2.105 at n = 0, -7.707 at n = 1999.
  auto lambda = [&](std::size_t n) {
    return 0.5 * std::log(s.alphas_cumprod[n] / (1.0 - s.alphas_cumprod[n]));
  };
  EXPECT_NEAR(lambda(0), 2.105, 5e-4);
  EXPECT_NEAR(lambda(1999), -7.707, 5e-4);
}

TEST(Schedule, DerivedArrays) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 2000);
  EXPECT_EQ(s.alphas_cumprod_prev[0], 1.0);
  double prod = 1.0;
  for (std::size_t t = 0; t < 2000; ++t) {
    prod *= 1.0 - s.betas[t];
    ASSERT_EQ(s.alphas_cumprod[t], prod) << t;  // left-to-right product, as np.cumprod
    if (t > 0) {
      ASSERT_EQ(s.alphas_cumprod_prev[t], s.alphas_cumprod[t - 1]) << t;
    }
    ASSERT_EQ(s.sqrt_alphas_cumprod[t], std::sqrt(prod));
    ASSERT_EQ(s.sqrt_one_minus_alphas_cumprod[t], std::sqrt(1.0 - prod));
  }
}

TEST(Schedule, PosteriorCoefficients) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 2000);
  // t = 0: ab_prev = 1, so var = 0, coef1 = beta_0 / (1 - ab_0) = 1 (up to rounding), coef2 = 0.
  EXPECT_EQ(s.posterior_variance[0], 0.0);
  EXPECT_NEAR(s.posterior_mean_coef1[0], 1.0, 1e-13);
  EXPECT_EQ(s.posterior_mean_coef2[0], 0.0);
  for (std::size_t t : {1u, 2u, 1000u, 1998u, 1999u}) {
    const double b = s.betas[t], ab = s.alphas_cumprod[t], abp = s.alphas_cumprod[t - 1];
    // var = beta (1 - ab_prev) / (1 - ab); coef1 = beta sqrt(ab_prev) / (1 - ab);
    // coef2 = (1 - ab_prev) sqrt(1 - beta) / (1 - ab).
    EXPECT_DOUBLE_EQ(s.posterior_variance[t], b * (1 - abp) / (1 - ab)) << t;
    EXPECT_DOUBLE_EQ(s.posterior_mean_coef1[t], b * std::sqrt(abp) / (1 - ab)) << t;
    EXPECT_DOUBLE_EQ(s.posterior_mean_coef2[t], (1 - abp) * std::sqrt(1 - b) / (1 - ab)) << t;
    // Averaged over x_t given x0 the posterior mean is E[x_{t-1} | x0]: coef1 + coef2 sqrt(ab_t) =
    // sqrt(ab_{t-1}).
    EXPECT_NEAR(s.posterior_mean_coef1[t] + s.posterior_mean_coef2[t] * std::sqrt(ab),
                std::sqrt(abp), 1e-12)
        << t;
    // The conditional variance of x_{t-1} given x_t and x0: (1 - ab_{t-1}) - coef2^2 (1 - ab_t).
    EXPECT_NEAR(s.posterior_variance[t],
                (1 - abp) - std::pow(s.posterior_mean_coef2[t], 2) * (1 - ab), 1e-12)
        << t;
  }
  // Hand values at t = 1 (T = 2000):
  //   var = 0.0055618163, coef1 = 0.3770803182, coef2 = 0.6229032200.
  EXPECT_NEAR(s.posterior_variance[1], 0.0055618163, 1e-10);
  EXPECT_NEAR(s.posterior_mean_coef1[1], 0.3770803182, 1e-10);
  EXPECT_NEAR(s.posterior_mean_coef2[1], 0.6229032200, 1e-10);
}

TEST(Schedule, ModelTimeAndConfigurableT) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 2000);
  EXPECT_EQ(s.model_time(0), 0.0);
  EXPECT_EQ(s.model_time(1000), 500.0);
  EXPECT_EQ(s.model_time(1999), 999.5);
  const NoiseSchedule small = NoiseSchedule::make("sqrt", 10);
  EXPECT_EQ(small.betas.size(), 10u);
  EXPECT_EQ(small.model_time(3), 300.0);
  EXPECT_NEAR(small.betas[0], 1.0 - (1.0 - std::sqrt(0.1001)) / 0.99, 1e-15);
  EXPECT_THROW(NoiseSchedule::make("cosine", 10), Error);
  EXPECT_THROW(NoiseSchedule::make("sqrt", 0), Error);
}

TEST(Schedule, Gather) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 2000);
  const at::Tensor t_B = at::tensor(std::vector<int64_t>{0, 1999, 1000}, at::kLong);
  const at::Tensor v64 = NoiseSchedule::gather(s.alphas_cumprod, t_B, at::kDouble);
  ASSERT_EQ(v64.sizes(), at::IntArrayRef({3}));
  EXPECT_EQ(v64.scalar_type(), at::kDouble);
  EXPECT_EQ(v64[0].item<double>(), s.alphas_cumprod[0]);
  EXPECT_EQ(v64[1].item<double>(), s.alphas_cumprod[1999]);
  EXPECT_EQ(v64[2].item<double>(), s.alphas_cumprod[1000]);
  const at::Tensor v32 = NoiseSchedule::gather(s.betas, t_B, at::kFloat);
  EXPECT_EQ(v32.scalar_type(), at::kFloat);
  EXPECT_EQ(v32[0].item<float>(), static_cast<float>(s.betas[0]));
  EXPECT_THROW(
      NoiseSchedule::gather(s.betas, at::tensor(std::vector<int64_t>{2000}, at::kLong), at::kFloat),
      Error);
  EXPECT_THROW(
      NoiseSchedule::gather(s.betas, at::tensor(std::vector<int64_t>{-1}, at::kLong), at::kFloat),
      Error);
}

}  // namespace
}  // namespace mds
