#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "train/optim.h"

namespace mds {

using train::AdamW;
using train::AdamWOptions;
using train::Ema;
using train::clip_gradients;
using train::learning_rate;

namespace {

TEST(AdamW, MatchesLibTorchAdamW) {
  torch::manual_seed(0);
  auto w0 = torch::randn({5, 3}, torch::kDouble);
  auto mine = w0.clone().requires_grad_(true);
  auto theirs = w0.clone().requires_grad_(true);
  AdamWOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  AdamW adam({{"w", mine}}, o);
  torch::optim::AdamW ref({theirs}, torch::optim::AdamWOptions(0.01).weight_decay(0.1));
  for (int step = 0; step < 5; ++step) {
    auto g = torch::randn({5, 3}, torch::kDouble);
    adam.zero_grad();
    ref.zero_grad();
    (mine * g).sum().backward();
    (theirs * g).sum().backward();
    adam.step(0.01);
    ref.step();
    // Our moments are float32 (like the master weights of a bf16 run): agreement to float precision.
    EXPECT_LT((mine - theirs).abs().max().item<double>(), 1e-6) << "step " << step;
  }
  EXPECT_EQ(adam.steps(), 5);
}

TEST(AdamW, StateRoundTripContinuesIdentically) {
  torch::manual_seed(1);
  auto a = torch::randn({4}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  AdamW first({{"p", a}}, {});
  for (int i = 0; i < 3; ++i) {
    first.zero_grad();
    (a * a).sum().backward();
    first.step(0.1);
  }
  AdamW second({{"p", b}}, {});
  {
    torch::NoGradGuard g;
    b.copy_(a);
  }
  second.load_state(first.state(), "test");
  EXPECT_EQ(second.steps(), 3);
  for (auto* opt : {&first, &second}) {
    auto& p = opt == &first ? a : b;
    opt->zero_grad();
    (p * p).sum().backward();
    opt->step(0.1);
  }
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_THROW(second.load_state({}, "empty"), Error);
}

TEST(LearningRate, WarmupThenLinearDecay) {
  EXPECT_DOUBLE_EQ(learning_rate(0, 100, 10, 1.0, 0.0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(9, 100, 10, 1.0, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(10, 100, 10, 1.0, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(55, 100, 10, 1.0, 0.0), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(100, 100, 10, 1.0, 0.1), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(5, 100, 0, 2.0, 0.0), 2.0 * (1.0 - 5.0 / 100.0));
}

TEST(Ema, AveragesWeights) {
  torch::nn::Linear layer(2, 1);
  Ema ema(*layer, 0.5);
  const auto w0 = layer->weight.detach().clone();
  {
    torch::NoGradGuard g;
    layer->weight.add_(2.0);
  }
  ema.update(*layer);
  EXPECT_TRUE(torch::allclose(ema.weights().at("weight"), w0 + 1.0));
}

TEST(LearningRate, ATimeBudgetDecaysToTheMinimumWhenItEnds) {
  train::LrSchedule s;
  s.total = 1000000, s.warmup = 10, s.peak = 1.0, s.min_lr = 0.0, s.budget_seconds = 100.0;
  EXPECT_DOUBLE_EQ(s.at(0, 50.0), 0.1);  // warm-up is counted in steps
  EXPECT_DOUBLE_EQ(s.at(20, 25.0), 0.75);  // a quarter of the budget
  EXPECT_DOUBLE_EQ(s.at(20, 100.0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(20, 250.0), 0.0);  // past the end: the minimum, not below
  // The steps can be further along than the clock: the lower rate wins.
  s.total = 110;
  EXPECT_DOUBLE_EQ(s.at(60, 10.0), learning_rate(60, 110, 10, 1.0, 0.0));
  // No budget: the steps alone.
  s.budget_seconds = 0.0;
  EXPECT_DOUBLE_EQ(s.at(60, 1e9), learning_rate(60, 110, 10, 1.0, 0.0));
}

TEST(Ema, WarmupStartsCloseToTheWeights) {
  torch::nn::Linear layer(2, 1);
  Ema ema(*layer, 0.999, /*warmup=*/true);
  EXPECT_DOUBLE_EQ(ema.decay_at(0), 0.1);
  EXPECT_DOUBLE_EQ(ema.decay_at(90), 91.0 / 100.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(100000), 0.999);
  const auto w0 = layer->weight.detach().clone();
  {
    torch::NoGradGuard g;
    layer->weight.add_(1.0);
  }
  ema.update(*layer, 0);  // decay 0.1: 0.1 w0 + 0.9 (w0 + 1)
  EXPECT_TRUE(torch::allclose(ema.weights().at("weight"), w0 + 0.9));
  Ema plain(*layer, 0.999);
  EXPECT_DOUBLE_EQ(plain.decay_at(0), 0.999);
}

TEST(ClipGradients, ScalesToTheMaximumNorm) {
  auto p = torch::zeros({2}).requires_grad_(true);
  (p * torch::tensor({3.0f, 4.0f})).sum().backward();
  EXPECT_NEAR(clip_gradients({p}, 1.0).item<double>(), 5.0, 1e-6);
  EXPECT_NEAR(p.grad().norm().item<double>(), 1.0, 1e-5);
  EXPECT_NEAR(clip_gradients({p}, 0.0).item<double>(), 1.0, 1e-5);  // 0: measured, not clipped
  // A NaN anywhere: the norm says so and nothing is scaled (the step will be skipped).
  {
    torch::NoGradGuard g;
    p.grad().copy_(torch::tensor({3.0f, std::nanf("")}));
  }
  EXPECT_TRUE(std::isnan(clip_gradients({p}, 1.0).item<double>()));
  EXPECT_EQ(p.grad()[0].item<float>(), 3.0f);
  EXPECT_FALSE(clip_gradients({torch::zeros({2}).requires_grad_(true)}, 1.0).defined());  // no gradient
}

// A skipped step (the device flag of a NaN or inf) changes nothing: weights, moments, the count; a
// flag that says "go" gives exactly the step without one. The EMA has no flag: it takes in the
// weights the skipped step left as they were.
TEST(AdamW, SkipFlagChangesNothing) {
  torch::manual_seed(3);
  auto a = torch::randn({6}, torch::kDouble).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  AdamW first({{"p", a}}, {}), second({{"p", b}}, {});
  torch::nn::Linear layer(2, 1);
  Ema ema(*layer, 0.9);
  for (int i = 0; i < 3; ++i) {
    for (auto* opt : {&first, &second}) {
      auto& p = opt == &first ? a : b;
      opt->zero_grad();
      (p * p * static_cast<double>(i + 1)).sum().backward();
    }
    first.step(0.1);
    second.step(0.1, torch::tensor(false));
    EXPECT_TRUE(torch::equal(a, b)) << i;
  }
  const auto before = a.detach().clone();
  const auto state_before = first.state();
  const auto ema_before = ema.weights().at("weight").clone();
  {
    torch::NoGradGuard g;
    layer->weight.add_(1.0);
  }
  first.step(0.1, torch::tensor(true));
  ema.update(*layer, 5);
  EXPECT_TRUE(torch::equal(a, before));
  EXPECT_EQ(first.steps(), 3);
  for (const auto& [name, t] : first.state()) EXPECT_TRUE(torch::equal(t, state_before.at(name))) << name;
  EXPECT_TRUE(torch::allclose(ema.weights().at("weight"), 0.9 * ema_before + 0.1 * layer->weight.detach()));
}

// The clip as a divisor: (norm + 1e-6) / max where the norm is above it and finite, 1 elsewhere, none
// without clipping; AdamW dividing by it as it reads the gradients takes the step that clipping them
// in place first takes.
TEST(ClipDivisor, ClipsInsideTheAdamWStep) {
  EXPECT_NEAR(train::clip_divisor(torch::tensor(5.0f), 1.0).item<double>(), 5.000001, 1e-6);
  EXPECT_EQ(train::clip_divisor(torch::tensor(0.5f), 1.0).item<float>(), 1.0f);
  EXPECT_EQ(train::clip_divisor(torch::tensor(std::nanf("")), 1.0).item<float>(), 1.0f);
  EXPECT_EQ(train::clip_divisor(torch::tensor(INFINITY), 1.0).item<float>(), 1.0f);
  EXPECT_FALSE(train::clip_divisor(torch::tensor(5.0f), 0.0).defined());
  EXPECT_FALSE(train::clip_divisor(torch::Tensor(), 1.0).defined());
  torch::manual_seed(4);
  auto a = torch::randn({5, 3}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW in_place({{"p", a}}, o), divided({{"p", b}}, o);
  for (int i = 0; i < 4; ++i) {
    for (auto* p : {&a, &b}) {
      if (p->grad().defined()) p->mutable_grad().zero_();
      (*p * *p * std::pow(10.0, 1 + i % 3)).sum().backward();  // norms well above 1, unlike each other
    }
    clip_gradients({a}, 1.0);
    in_place.step(0.05);
    const torch::Tensor norm = train::gradient_norm({b});
    divided.step(0.05, {}, train::clip_divisor(norm, 1.0));
    EXPECT_LT((a - b).abs().max().item<double>(), 1e-6) << i;
  }
}

}  // namespace
}  // namespace mds
