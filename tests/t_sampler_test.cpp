// TimestepSampler: uniform draws, the loss-aware second-moment resampler computed by hand on T = 4,
// importance weights, the shift history and checkpoint round trips (docs/math.md eq. T1-T2).
//
// Dimensions: B batch; T steps; H history per step.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "diffusion/t_sampler.h"

namespace mds {

using diffusion::TimestepSampler;

namespace {

at::Generator gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

void update(TimestepSampler& s, std::vector<int64_t> t, std::vector<double> loss) {
  s.update(at::tensor(t, at::kLong), at::tensor(loss, at::kDouble));
}

// T = 4, H = 2. Histories whose root mean squares are 1, 2, 3, 4:
//   t0 [1, 1] -> 1;  t1 [2, 2] -> 2;  t2 [3, 3] -> 3;  t3 [0, sqrt(32)] -> sqrt(32/2) = 4.
// w = [1, 2, 3, 4] / 10, p = 0.999 w + 0.001 / 4 = [0.10015, 0.20005, 0.29995, 0.39985] (sum 1),
// importance weight 1 / (4 p) = [2.496255617, 1.249687578, 0.833472245, 0.625234463].
const double kP[4] = {0.10015, 0.20005, 0.29995, 0.39985};
const double kWeight[4] = {2.496255617, 1.249687578, 0.833472245, 0.625234463};

void warm(TimestepSampler& s) {
  update(s, {0, 1, 2, 3, 0, 1, 2}, {1, 2, 3, 0, 1, 2, 3});
  ASSERT_FALSE(s.warmed_up());  // t3 has one entry
  update(s, {3}, {std::sqrt(32.0)});
  ASSERT_TRUE(s.warmed_up());
}

TEST(TimestepSampler, UniformWeightsOne) {
  TimestepSampler s("uniform", 5);
  auto draw = s.sample(4000, gen(1));
  ASSERT_EQ(draw.t_B.sizes(), at::IntArrayRef({4000}));
  EXPECT_EQ(draw.t_B.scalar_type(), at::kLong);
  EXPECT_EQ(draw.weight_B.scalar_type(), at::kFloat);
  EXPECT_TRUE(draw.weight_B.eq(1.0).all().item<bool>());
  EXPECT_GE(draw.t_B.min().item<int64_t>(), 0);
  EXPECT_LE(draw.t_B.max().item<int64_t>(), 4);
  const at::Tensor freq = at::bincount(draw.t_B, {}, 5).to(at::kDouble) / 4000.0;
  EXPECT_LT((freq - 0.2).abs().max().item<double>(), 0.03) << freq;
}

TEST(TimestepSampler, LossAwareUniformUntilWarm) {
  TimestepSampler s("lossaware", 4, 2);
  EXPECT_FALSE(s.warmed_up());
  update(s, {0, 1, 2, 3, 0, 1, 2}, {1, 2, 3, 0, 1, 2, 3});
  auto draw = s.sample(100, gen(2));
  EXPECT_TRUE(draw.weight_B.eq(1.0).all().item<bool>());
}

TEST(TimestepSampler, LossAwareProbabilitiesByHand) {
  TimestepSampler s("lossaware", 4, 2, 0.001);
  warm(s);
  const int64_t n = 40000;
  auto draw = s.sample(n, gen(3));
  const int64_t* t = draw.t_B.data_ptr<int64_t>();
  const float* w = draw.weight_B.data_ptr<float>();
  for (int64_t b = 0; b < n; ++b) {
    ASSERT_TRUE(t[b] >= 0 && t[b] < 4);
    ASSERT_NEAR(w[b], kWeight[t[b]], 1e-6) << "t = " << t[b];
  }
  const at::Tensor freq = at::bincount(draw.t_B, {}, 4).to(at::kDouble) / static_cast<double>(n);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(freq[k].item<double>(), kP[k], 0.01) << k;
}

TEST(TimestepSampler, HistoryShiftsOutTheOldest) {
  TimestepSampler s("lossaware", 4, 2);
  warm(s);
  update(s, {0}, {5.0});  // t0: [1, 1] -> [1, 5]
  const at::Tensor h = s.history_tensor();
  ASSERT_EQ(h.sizes(), at::IntArrayRef({4, 2}));
  EXPECT_EQ(h[0][0].item<double>(), 1.0);
  EXPECT_EQ(h[0][1].item<double>(), 5.0);
  EXPECT_EQ(h[3][1].item<double>(), std::sqrt(32.0));
  const at::Tensor c = s.counts_tensor();
  EXPECT_TRUE(c.eq(2).all().item<bool>());
  // Root mean squares now [sqrt(13), 2, 3, 4]: p_0 = 0.999 sqrt(13) / (9 + sqrt(13)) + 0.00025.
  auto draw = s.sample(2000, gen(4));
  const double p0 = 0.999 * std::sqrt(13.0) / (9.0 + std::sqrt(13.0)) + 0.00025;
  const at::Tensor zeros = draw.t_B.eq(0);
  ASSERT_TRUE(zeros.any().item<bool>());
  EXPECT_NEAR(draw.weight_B.masked_select(zeros)[0].item<float>(), 1.0 / (4.0 * p0), 1e-6);
}

TEST(TimestepSampler, SaveLoadRoundTrip) {
  TimestepSampler a("lossaware", 4, 2);
  warm(a);
  update(a, {1, 2}, {7.0, 0.5});
  TimestepSampler b("lossaware", 4, 2);
  b.load(a.history_tensor(), a.counts_tensor());
  EXPECT_TRUE(b.warmed_up());
  EXPECT_TRUE(at::equal(a.history_tensor(), b.history_tensor()));
  auto da = a.sample(256, gen(5)), db = b.sample(256, gen(5));
  EXPECT_TRUE(at::equal(da.t_B, db.t_B));
  EXPECT_TRUE(at::equal(da.weight_B, db.weight_B));
  // The same updates keep them in step.
  update(a, {3, 0}, {1.0, 2.0});
  update(b, {3, 0}, {1.0, 2.0});
  da = a.sample(256, gen(6));
  db = b.sample(256, gen(6));
  EXPECT_TRUE(at::equal(da.t_B, db.t_B));
  EXPECT_TRUE(at::equal(da.weight_B, db.weight_B));
  // A partly filled history round-trips too (counts below H).
  TimestepSampler c("lossaware", 4, 2), d("lossaware", 4, 2);
  update(c, {2}, {4.0});
  d.load(c.history_tensor(), c.counts_tensor());
  EXPECT_TRUE(at::equal(c.counts_tensor(), d.counts_tensor()));
  EXPECT_FALSE(d.warmed_up());
}

// update_later() + the next draw is update() + that draw: the same history and the same t's; a batch
// flagged to skip is dropped; the state cannot be read while updates are pending. `device`: where the
// losses and the flag live (the step's device: their copy to the host is queued, not waited for).
at::Tensor flag(bool value, const at::Device& device) {
  return at::full({}, value ? 1 : 0, at::TensorOptions().dtype(at::kLong)).to(device, at::kBool);
}

void expect_update_later_is_update(const at::Device& device) {
  TimestepSampler now("lossaware", 4, 2), later("lossaware", 4, 2);
  warm(now);
  warm(later);
  const at::Tensor t = at::tensor(std::vector<int64_t>{1, 3, 3}, at::kLong);
  const at::Tensor loss = at::tensor(std::vector<float>{7.0f, 0.5f, 2.0f});
  now.update(t, loss);
  later.update_later(t, loss.to(device), flag(false, device));
  EXPECT_THROW(later.history_tensor(), Error);
  // Dropped: a NaN or inf batch.
  later.update_later(at::tensor(std::vector<int64_t>{0}, at::kLong), at::tensor(std::vector<float>{99.0f}).to(device),
                     flag(true, device));
  auto a = now.sample(256, gen(8)), b = later.sample(256, gen(8));
  EXPECT_TRUE(at::equal(a.t_B, b.t_B));
  EXPECT_TRUE(at::equal(a.weight_B, b.weight_B));
  EXPECT_TRUE(at::equal(now.history_tensor(), later.history_tensor()));
  EXPECT_TRUE(at::equal(now.counts_tensor(), later.counts_tensor()));
  // flush() alone does the same (what a checkpoint calls before it reads the state).
  now.update(t, loss);
  later.update_later(t, loss.to(device));
  later.flush();
  EXPECT_TRUE(at::equal(now.history_tensor(), later.history_tensor()));
}

TEST(TimestepSampler, UpdateLaterIsUpdateAtTheNextDraw) { expect_update_later_is_update(at::kCPU); }

TEST(TimestepSamplerCuda, UpdateLaterFromTheDeviceIsUpdateAtTheNextDraw) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_update_later_is_update(at::Device(at::kCUDA, 0));
}

TEST(TimestepSampler, Errors) {
  EXPECT_THROW(TimestepSampler("fixstep", 4), Error);
  EXPECT_THROW(TimestepSampler("uniform", 0), Error);
  TimestepSampler s("lossaware", 4, 2);
  EXPECT_THROW(update(s, {4}, {1.0}), Error);
  EXPECT_THROW(s.load(at::zeros({3, 2}, at::kDouble), at::zeros({4}, at::kLong)), Error);
  EXPECT_THROW(s.load(at::zeros({4, 2}, at::kDouble), at::full({4}, 3, at::kLong)), Error);
}

}  // namespace
}  // namespace mds
