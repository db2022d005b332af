// The optimizer's multi-tensor path (fused AdamW, _foreach_ EMA and clip, skip flags on the device)
// against its per-tensor path on the CPU: the same formulas, so the same numbers to float32 rounding.
// Skips without a GPU.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/torch_compat.h"
#include "train/optim.h"

namespace mds {

using train::AdamW;
using train::AdamWOptions;
using train::Ema;
using train::clip_gradients;

namespace {

// A module with a few parameters of different shapes, on a device.
struct Params : torch::nn::Module {
  Params() {
    a = register_parameter("a", torch::randn({7, 5}));
    b = register_parameter("b", torch::randn({5}));
    c = register_parameter("c", torch::randn({3, 2, 4}));
  }
  torch::Tensor a, b, c;
};

double max_diff(const torch::Tensor& x, const torch::Tensor& y) {
  return (x.to(torch::kCPU, torch::kDouble) - y.to(torch::kCPU, torch::kDouble)).abs().max().item<double>();
}

// Params of `m` as AdamW takes them.
std::vector<std::pair<std::string, torch::Tensor>> named(Params& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

// A copy of `cpu` on the GPU, in `dtype`.
void copy_to_gpu(Params& cpu, Params& gpu, torch::Dtype dtype) {
  {
    torch::NoGradGuard g;
    for (auto& p : gpu.named_parameters()) p.value().copy_(cpu.named_parameters()[p.key()]);
  }
  gpu.to(torch::kCUDA, dtype);
}

TEST(OptimGpu, MultiTensorPathMatchesThePerTensorPath) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(5);
  Params cpu;
  Params gpu;
  copy_to_gpu(cpu, gpu, torch::kFloat);
  AdamWOptions o;
  o.weight_decay = 0.05;
  AdamW adam_cpu(named(cpu), o), adam_gpu(named(gpu), o);
  EXPECT_EQ(adam_gpu.fused(), compat::kHasFusedAdamW);
  EXPECT_FALSE(adam_cpu.fused());
  Ema ema_cpu(cpu, 0.9, /*warmup=*/true), ema_gpu(gpu, 0.9, true);
  std::vector<torch::Tensor> params_cpu = cpu.parameters(), params_gpu = gpu.parameters();
  for (int step = 0; step < 6; ++step) {
    // Step 3 has a NaN gradient: both paths skip it (the CPU one reading the flag, the GPU one not).
    for (std::size_t i = 0; i < params_cpu.size(); ++i) {
      torch::Tensor g = torch::randn(params_cpu[i].sizes()) * 3.0;
      if (step == 3 && i == 1) g[0] = std::nanf("");
      params_cpu[i].mutable_grad() = g.clone();
      params_gpu[i].mutable_grad() = g.to(torch::kCUDA);
    }
    // As the training step: the norm, the clip as a divisor inside AdamW's step.
    const torch::Tensor norm_cpu = train::gradient_norm(params_cpu), norm_gpu = train::gradient_norm(params_gpu);
    if (step == 3) {
      EXPECT_TRUE(std::isnan(norm_gpu.item<double>()));
    } else {
      EXPECT_NEAR(norm_gpu.item<double>(), norm_cpu.item<double>(), 1e-4 * norm_cpu.item<double>()) << step;
    }
    const torch::Tensor skip_cpu = norm_cpu.isfinite().logical_not(), skip_gpu = norm_gpu.isfinite().logical_not();
    adam_cpu.step(0.01, skip_cpu, train::clip_divisor(norm_cpu, 1.0));
    adam_gpu.step(0.01, skip_gpu, train::clip_divisor(norm_gpu, 1.0));
    ema_cpu.update(cpu, step);
    ema_gpu.update(gpu, step);
    for (std::size_t i = 0; i < params_cpu.size(); ++i)
      EXPECT_LT(max_diff(params_gpu[i], params_cpu[i]), 2e-6) << "step " << step << " tensor " << i;
    for (const auto& [name, w] : ema_cpu.weights()) EXPECT_LT(max_diff(ema_gpu.weights().at(name), w), 2e-6) << name;
  }
  EXPECT_EQ(adam_cpu.steps(), 5);
  EXPECT_EQ(adam_gpu.steps(), 5);
  const auto state_cpu = adam_cpu.state(), state_gpu = adam_gpu.state();
  for (const auto& [name, t] : state_cpu) EXPECT_LT(max_diff(state_gpu.at(name), t), 1e-5) << name;
  // The in-place clip on the multi-tensor path: the same gradients as on the CPU.
  for (std::size_t i = 0; i < params_cpu.size(); ++i) {
    torch::Tensor g = torch::randn(params_cpu[i].sizes()) * 3.0;
    params_cpu[i].mutable_grad() = g.clone();
    params_gpu[i].mutable_grad() = g.to(torch::kCUDA);
  }
  EXPECT_NEAR(clip_gradients(params_gpu, 1.0).item<double>(), clip_gradients(params_cpu, 1.0).item<double>(), 1e-3);
  for (std::size_t i = 0; i < params_cpu.size(); ++i)
    EXPECT_LT(max_diff(params_gpu[i].grad(), params_cpu[i].grad()), 1e-6) << i;
}

// In float64 the fused kernels and the per-tensor formulas (O1) agree to float64 rounding: the fused
// optimizer is the same optimizer, not an approximation of it.
TEST(OptimGpu, FusedAdamWEqualsThePerTensorOneInFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (!compat::kHasFusedAdamW) GTEST_SKIP() << "no fused AdamW in this LibTorch";
  torch::manual_seed(6);
  Params cpu;
  Params gpu;
  cpu.to(torch::kDouble);
  copy_to_gpu(cpu, gpu, torch::kDouble);
  AdamWOptions o;
  o.weight_decay = 0.05;
  AdamW adam_cpu(named(cpu), o), adam_gpu(named(gpu), o);
  ASSERT_TRUE(adam_gpu.fused());
  std::vector<torch::Tensor> params_cpu = cpu.parameters(), params_gpu = gpu.parameters();
  double worst = 0.0;
  for (int step = 0; step < 20; ++step) {
    for (std::size_t i = 0; i < params_cpu.size(); ++i) {
      torch::Tensor g = torch::randn(params_cpu[i].sizes(), torch::kDouble);
      params_cpu[i].mutable_grad() = g.clone();
      params_gpu[i].mutable_grad() = g.to(torch::kCUDA);
    }
    adam_cpu.step(0.01);
    adam_gpu.step(0.01);
    for (std::size_t i = 0; i < params_cpu.size(); ++i) worst = std::max(worst, max_diff(params_gpu[i], params_cpu[i]));
  }
  std::printf("float64, 20 steps: largest difference %.3g\n", worst);
  EXPECT_LT(worst, 1e-13);
  const auto state_cpu = adam_cpu.state(), state_gpu = adam_gpu.state();
  for (const auto& [name, t] : state_cpu) EXPECT_LT(max_diff(state_gpu.at(name), t), 1e-13) << name;
}

}  // namespace
}  // namespace mds
