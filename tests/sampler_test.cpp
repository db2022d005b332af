// Samplers (docs/math.md eq. P1-P6): DPM-Solver++ of order 1 equals DDIM step by step; with an
// oracle x0 every sampler lands on the closed form; many 2M steps reach DDIM's end point; the
// source is never changed; DDIM respacing; 3M; clamping; ancestral over all T steps; the discrete
// schedule's lambda interpolation.
//
// Dimensions: B batch, L length, C embedding dim, V vocabulary; T schedule steps.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "diffusion/dpm_solver.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"

namespace mds {

using diffusion::NoiseSchedule;
using diffusion::SampleInputs;
using diffusion::SamplerOptions;
using diffusion::X0Predictor;
using diffusion::clamp_to_embeddings;
using diffusion::sample;
using diffusion::sample_from;
namespace detail = diffusion::detail;

namespace {

constexpr int64_t B = 2, L = 5, C = 3;
const auto kF64 = at::TensorOptions().dtype(at::kDouble);

at::Generator gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Batch 0: source = positions 0-1; batch 1: source = positions 0-2. The rest is target.
SampleInputs make_inputs(bool with_m) {
  SampleInputs in;
  in.anchor_BLC = at::randn({B, L, C}, gen(11), kF64);
  in.trg_mask_BL = at::tensor(std::vector<uint8_t>{0, 0, 1, 1, 1, 0, 0, 0, 1, 1}, at::kByte)
                       .view({B, L})
                       .to(at::kBool);
  if (with_m) in.absorbing_C = at::tensor(std::vector<double>{0.3, -0.2, 0.1}, kF64);
  return in;
}

at::Tensor make_x_T(const SampleInputs& in, uint64_t seed) {
  at::Tensor x = at::randn({B, L, C}, gen(seed), kF64);
  return in.absorbing_C.defined() ? x + in.absorbing_C.view({1, 1, C}) : x;
}

at::Tensor smooth_x0(const at::Tensor& x_BLC, const at::Tensor& t_B) {
  return at::tanh(0.7 * x_BLC + 0.3) * 0.8 + 2e-4 * t_B.to(at::kDouble).view({-1, 1, 1});
}

// Records what the sampler passes in; returns a smooth function of x and t (or a fixed x0).
struct Recorder {
  std::vector<at::Tensor> x, t;
  at::Tensor fixed_x0;  // oracle: always this x0
  X0Predictor fn() {
    return [this](const at::Tensor& x_BLC, const at::Tensor& t_B) {
      x.push_back(x_BLC.clone());
      t.push_back(t_B.clone());
      return fixed_x0.defined() ? fixed_x0.clone() : smooth_x0(x_BLC, t_B);
    };
  }
};

at::Tensor target(const at::Tensor& x_BLC, const SampleInputs& in) {
  return x_BLC.masked_select(in.trg_mask_BL.unsqueeze(-1).expand_as(x_BLC));
}
at::Tensor source(const at::Tensor& x_BLC, const SampleInputs& in) {
  return x_BLC.masked_select(in.trg_mask_BL.logical_not().unsqueeze(-1).expand_as(x_BLC));
}
double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

SamplerOptions opts(const std::string& sampler, int64_t steps) {
  SamplerOptions o;
  o.sampler = sampler;
  o.steps = steps;
  return o;
}

// --- DPM-Solver++ forced to first order is DDIM, step by step ---------------------------------
// T = 13: the time_uniform grid t_k = 1 - k (12/13) / 4 sits on t_n = (n + 1)/13 with n = 12, 9, 6,
// 3, 0, exactly DDIM's kept steps for 5 steps (round(3k)). DPM calls the model at n = 12, 9, 6, 3
// and ends at x(n = 0); DDIM calls it at 12, 9, 6, 3, 0 (its 5th input is x(n = 0)) and returns x0.
TEST(Sampler, DpmFirstOrderEqualsDdimStepByStep) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 13);
  for (bool with_m : {false, true}) {
    const SampleInputs in = make_inputs(with_m);
    const at::Tensor x_T = make_x_T(in, 21);
    Recorder dpm, ddim;
    const at::Tensor out_dpm = sample_from(s, dpm.fn(), in, opts("dpm++1", 4), x_T, gen(1));
    const at::Tensor out_ddim = sample_from(s, ddim.fn(), in, opts("ddim", 5), x_T, gen(1));
    ASSERT_EQ(dpm.x.size(), 4u);
    ASSERT_EQ(ddim.x.size(), 5u);
    const int n[] = {12, 9, 6, 3, 0};
    for (std::size_t k = 0; k < 4; ++k) {
      EXPECT_LT(max_diff(dpm.x[k], ddim.x[k]), 1e-12) << "step " << k << " m " << with_m;
      EXPECT_NEAR(dpm.t[k][0].item<float>(), n[k] * 1000.0 / 13.0, 1e-3);  // upstream time
      EXPECT_EQ(ddim.t[k][0].item<float>(), static_cast<float>(n[k] * 1000.0 / 13.0));
    }
    EXPECT_LT(max_diff(out_dpm, ddim.x[4]), 1e-12);
    EXPECT_EQ(ddim.t[4][0].item<float>(), 0.0f);
    EXPECT_TRUE(at::equal(out_ddim, at::where(in.trg_mask_BL.unsqueeze(-1),
                                              ddim.fn()(ddim.x[4], ddim.t[4]), in.anchor_BLC)));
  }
}

// --- Oracle x0: every sampler returns x0 (DPM-Solver++: the exact flow to t_0 = 1/N) -----------
// With D constant the exponential integrator is exact at every order:
//   y(t) = alpha_t y0 + sigma_t (y_T - alpha_T y0) / sigma_T,   y = x - m,
// so DPM-Solver++ ends at alpha(1/N) y0 + sigma(1/N) eps with alpha(1/N)^2 = ab_0. DDIM's last jump
// (to ab = 1) and the ancestral last step (coef2 = 0) land on x0 itself.
TEST(Sampler, OracleReturnsX0) {
  for (int64_t T : {10, 2000}) {
    const NoiseSchedule s = NoiseSchedule::make("sqrt", T);
    for (bool with_m : {false, true}) {
      const SampleInputs in = make_inputs(with_m);
      const at::Tensor x_T = make_x_T(in, 22);
      Recorder oracle;
      oracle.fixed_x0 = at::randn({B, L, C}, gen(23), kF64);
      const at::Tensor x0 = at::where(in.trg_mask_BL.unsqueeze(-1), oracle.fixed_x0, in.anchor_BLC);
      const at::Tensor m = with_m ? in.absorbing_C.view({1, 1, C}) : at::zeros({1, 1, C}, kF64);
      const double a0 = std::sqrt(s.alphas_cumprod[0]), s0 = std::sqrt(1 - s.alphas_cumprod[0]);
      const double aT = std::sqrt(s.alphas_cumprod[T - 1]),
                   sT = std::sqrt(1 - s.alphas_cumprod[T - 1]);
      const at::Tensor eps = ((x_T - m) - aT * (x0 - m)) / sT;
      const at::Tensor flow =
          at::where(in.trg_mask_BL.unsqueeze(-1), m + a0 * (x0 - m) + s0 * eps, in.anchor_BLC);
      for (const char* name : {"dpm++1", "dpm++2m", "dpm++3m"}) {
        for (int64_t steps : {1, 3, 5, 10, 20}) {
          const at::Tensor out = sample_from(s, oracle.fn(), in, opts(name, steps), x_T, gen(1));
          EXPECT_LT(max_diff(out, flow), 1e-10) << name << " steps " << steps << " T " << T;
        }
      }
      EXPECT_TRUE(at::equal(sample_from(s, oracle.fn(), in, opts("ddim", 4), x_T, gen(1)), x0));
      for (int64_t steps : std::initializer_list<int64_t>{4, T}) {
        SamplerOptions o = opts("ancestral", steps);
        o.discrete_noise = with_m;
        const at::Tensor out = sample_from(s, oracle.fn(), in, o, x_T, gen(2));
        EXPECT_LT(max_diff(out, x0), 1e-12) << "ancestral steps " << steps;
      }
    }
  }
}

// --- Many 2M steps reach DDIM's end point x(n = 0) ---------------------------------------------
// Both solve the same probability-flow ODE. DDIM is first order and cannot take more than T steps,
// so with a state-dependent x0 its end point still carries an O(1/S) error (about 0.013 here at
// S = T = 2000); its Richardson extrapolation 2 x_S - x_{S/2} removes the leading term. The
// reference is 2M on a fine logSNR grid (second order: 4x closer per doubling).
TEST(Sampler, Dpm2MConvergesToDdim) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 2000);
  const SampleInputs in = make_inputs(true);
  const at::Tensor x_T = make_x_T(in, 24);
  auto dpm = [&](const char* name, const char* skip, int64_t steps) {
    SamplerOptions o = opts(name, steps);
    o.skip_type = skip;
    Recorder rec;
    return sample_from(s, rec.fn(), in, o, x_T, gen(1));
  };
  auto ddim_end = [&](int64_t steps) {  // x(n = 0): DDIM's last model input
    Recorder rec;
    sample_from(s, rec.fn(), in, opts("ddim", steps), x_T, gen(1));
    return rec.x.back();
  };
  const at::Tensor ref = dpm("dpm++2m", "logSNR", 800);
  EXPECT_LT(max_diff(dpm("dpm++2m", "logSNR", 400), ref), 1e-4);
  // 2M on the default time_uniform grid converges to it.
  double last = 1e9;
  for (int64_t steps : {100, 200, 400, 800}) {
    const double err = max_diff(dpm("dpm++2m", "time_uniform", steps), ref);
    EXPECT_LT(err, last) << steps;
    last = err;
  }
  EXPECT_LT(last, 2e-3);
  EXPECT_LT(max_diff(dpm("dpm++3m", "logSNR", 400), ref), 1e-4);
  // DDIM converges to the same point, at first order.
  const at::Tensor d1000 = ddim_end(1000), d2000 = ddim_end(2000);
  const double e1000 = max_diff(d1000, ref), e2000 = max_diff(d2000, ref);
  EXPECT_LT(e2000, e1000);
  EXPECT_GT(e1000 / e2000, 1.5);
  EXPECT_LT(e1000 / e2000, 2.5);
  EXPECT_LT(max_diff(2.0 * d2000 - d1000, ref), 0.25 * e2000);
  EXPECT_LT(e2000, 0.03);
}

// --- 2M and 3M against an independent transcription of the update (the "≡" form of 2M) ---------
TEST(Sampler, Dpm2MMatchesHandTranscription) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 50);
  const diffusion::detail::DiscreteVP vp(s);
  const SampleInputs in = make_inputs(false);
  const at::Tensor x_T = make_x_T(in, 25);
  const at::Tensor trg = in.trg_mask_BL.unsqueeze(-1);
  for (int64_t M : {4, 12}) {  // 4 < 10: lower_order_final makes the last step first order
    Recorder rec;
    const at::Tensor out = sample_from(s, rec.fn(), in, opts("dpm++2m", M), x_T, gen(1));
    auto D = [&](const at::Tensor& x, double t) {
      const at::Tensor t_B = at::full({B}, (t - 1.0 / 50) * 1000.0, at::kFloat);
      return at::where(trg, smooth_x0(x, t_B), in.anchor_BLC);
    };
    const std::vector<double> ts = vp.time_steps("time_uniform", 1.0, 1.0 / 50, M);
    at::Tensor x = at::where(trg, x_T, in.anchor_BLC);
    at::Tensor D_prev, D_cur = D(x, ts[0]);
    for (int64_t k = 1; k <= M; ++k) {
      const double s0 = ts[k - 1], t = ts[k];
      const double h = vp.lambda(t) - vp.lambda(s0);
      const double c = -vp.alpha(t) * std::expm1(-h);
      const bool second = k >= 2 && !(M < 10 && k == M);
      at::Tensor next;
      if (second) {
        const double r = (vp.lambda(s0) - vp.lambda(ts[k - 2])) / h;
        next = vp.sigma(t) / vp.sigma(s0) * x + c * ((1 + 0.5 / r) * D_cur - (0.5 / r) * D_prev);
      } else {
        next = vp.sigma(t) / vp.sigma(s0) * x + c * D_cur;
      }
      x = at::where(trg, next, in.anchor_BLC);
      D_prev = D_cur;
      if (k < M) D_cur = D(x, t);
    }
    EXPECT_LT(max_diff(out, x), 1e-12) << "M = " << M;
    EXPECT_EQ(rec.x.size(), static_cast<std::size_t>(M));  // no model call after the last step
  }
}

// --- The source part is never changed ---------------------------------------------------------
TEST(Sampler, SourceIsAnchoredEverywhere) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 30);
  const SampleInputs in = make_inputs(true);
  const at::Tensor anchor_src = source(in.anchor_BLC, in);
  // x_T with garbage on the source: sample_from must replace it by the anchor.
  const at::Tensor x_T = at::randn({B, L, C}, gen(26), kF64) * 5.0;
  for (const char* name : {"dpm++2m", "dpm++3m", "ddim", "ancestral"}) {
    for (const char* skip : {"time_uniform", "logSNR", "time_quadratic"}) {
      SamplerOptions o = opts(name, 7);
      o.skip_type = skip;
      o.discrete_noise = std::string(name) == "ancestral";
      o.time_mapping = std::string(skip) == "logSNR" ? "v2" : "upstream";
      Recorder rec;
      const at::Tensor out = sample_from(s, rec.fn(), in, o, x_T, gen(3));
      ASSERT_FALSE(rec.x.empty());
      for (const at::Tensor& x : rec.x)
        EXPECT_TRUE(at::equal(source(x, in), anchor_src)) << name << skip;
      EXPECT_TRUE(at::equal(source(out, in), anchor_src)) << name << skip;
      EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << name << skip;
    }
  }
}

// --- DDIM respacing: a jump from s to t uses ab[t], not ab[s - 1] ------------------------------
TEST(Sampler, DdimRespacedJump) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 10);
  const SampleInputs in = make_inputs(false);
  const at::Tensor x_T = make_x_T(in, 27);
  Recorder rec;
  rec.fixed_x0 = at::randn({B, L, C}, gen(28), kF64);
  sample_from(s, rec.fn(), in, opts("ddim", 4), x_T, gen(1));
  // Kept steps round(3k), k = 0..3: 9, 6, 3, 0; model times 900, 600, 300, 0.
  ASSERT_EQ(rec.t.size(), 4u);
  const float times[] = {900.f, 600.f, 300.f, 0.f};
  for (int k = 0; k < 4; ++k) EXPECT_EQ(rec.t[k][0].item<float>(), times[k]);
  // x_6 = sqrt(ab_6) x0 + sqrt(1 - ab_6) (x_9 - sqrt(ab_9) x0) / sqrt(1 - ab_9).
  const at::Tensor x0 = target(rec.fixed_x0, in), x9 = target(rec.x[0], in);
  auto jump = [&](double ab_to) {
    const double ab9 = s.alphas_cumprod[9];
    return std::sqrt(ab_to) * x0 +
           std::sqrt(1 - ab_to) * (x9 - std::sqrt(ab9) * x0) / std::sqrt(1 - ab9);
  };
  EXPECT_LT(max_diff(target(rec.x[1], in), jump(s.alphas_cumprod[6])), 1e-12);
  EXPECT_GT(max_diff(target(rec.x[1], in), jump(s.alphas_cumprod_prev[9])),
            1e-3);  // DiffuSeq's bug
}

// --- Ancestral: all T steps when steps >= T; the respaced subsequence otherwise -----------------
TEST(Sampler, AncestralSteps) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 7);
  const SampleInputs in = make_inputs(true);
  for (int64_t steps : {7, 100}) {
    Recorder rec;
    sample_from(s, rec.fn(), in, opts("ancestral", steps), make_x_T(in, 29), gen(4));
    ASSERT_EQ(rec.t.size(), 7u);
    for (int k = 0; k < 7; ++k) {
      EXPECT_EQ(rec.t[k][0].item<float>(), static_cast<float>((6 - k) * 1000.0 / 7.0));
    }
  }
  Recorder rec;
  sample_from(s, rec.fn(), in, opts("ancestral", 3), make_x_T(in, 29), gen(4));
  ASSERT_EQ(rec.t.size(), 3u);  // steps 6, 3, 0
  EXPECT_EQ(rec.t[0][0].item<float>(), static_cast<float>(6000.0 / 7.0));
  EXPECT_EQ(rec.t[1][0].item<float>(), static_cast<float>(3000.0 / 7.0));
  EXPECT_EQ(rec.t[2][0].item<float>(), 0.0f);
  // Same seed, same result; another seed, another one.
  Recorder r1, r2, r3;
  const at::Tensor a = sample_from(s, r1.fn(), in, opts("ancestral", 7), make_x_T(in, 29), gen(5));
  const at::Tensor b = sample_from(s, r2.fn(), in, opts("ancestral", 7), make_x_T(in, 29), gen(5));
  const at::Tensor c = sample_from(s, r3.fn(), in, opts("ancestral", 7), make_x_T(in, 29), gen(6));
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
}

// With discrete noise at rate 1 and sqrt(beta) ~ 1 near T, most target tokens sit exactly at m
// after the first step.
TEST(Sampler, AncestralDiscreteNoiseJumpsToM) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 20);
  const SampleInputs in = make_inputs(true);
  SamplerOptions o = opts("ancestral", 20);
  o.discrete_noise = true;
  o.absorb_rate = 1.0;
  Recorder rec;
  sample_from(s, rec.fn(), in, o, make_x_T(in, 30), gen(7));
  // p = sqrt(beta_19) = sqrt(0.999): every target token of the second model input is m.
  const at::Tensor m_BLC = in.absorbing_C.view({1, 1, C}).expand({B, L, C});
  const double p = std::sqrt(s.betas[19]);
  ASSERT_GT(p, 0.99);
  const at::Tensor at_m = (rec.x[1] == m_BLC).all(-1).masked_select(in.trg_mask_BL);
  EXPECT_GE(at_m.sum().item<int64_t>(), at_m.numel() - 1);
  SamplerOptions bad = opts("dpm++2m", 5);
  bad.discrete_noise = true;
  Recorder r2;
  EXPECT_THROW(sample_from(s, r2.fn(), in, bad, make_x_T(in, 30), gen(7)), Error);
  SampleInputs no_m = make_inputs(false);
  EXPECT_THROW(sample_from(s, r2.fn(), no_m, o, make_x_T(no_m, 30), gen(7)), Error);
}

// --- sample(): x_T = m + N(0, I) from the CPU generator, reproducible --------------------------
TEST(Sampler, SampleStartsFromMPlusNoise) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 20);
  const SampleInputs in = make_inputs(true);
  Recorder a, b;
  const at::Tensor out = sample(s, a.fn(), in, opts("dpm++2m", 5), gen(8));
  // The same draw by hand: float32 N(0, I) then m.
  const at::Tensor noise =
      at::randn({B, L, C}, gen(8), at::TensorOptions().dtype(at::kFloat)).to(at::kDouble);
  const at::Tensor x_T = noise + in.absorbing_C.view({1, 1, C});
  EXPECT_TRUE(at::equal(a.x[0], at::where(in.trg_mask_BL.unsqueeze(-1), x_T, in.anchor_BLC)));
  EXPECT_TRUE(at::equal(out, sample_from(s, b.fn(), in, opts("dpm++2m", 5), x_T, gen(8))));
  Recorder c;
  EXPECT_TRUE(at::equal(out, sample(s, c.fn(), in, opts("dpm++2m", 5), gen(8))));
}

// --- sample.start_time < 1: SDEdit from a given x0 ---------------------------------------------
// The first model input is the given x0 through the forward process to the start time (every token
// at m with absorb rate 1 where the draw says so, none with rate 0), the first model time is the
// start's, and the grid runs from there to the end.
TEST(Sampler, StartTimeBelowOneNoisesTheGivenX0) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 20);
  SampleInputs in = make_inputs(true);
  in.start_x0_BLC = at::randn({B, L, C}, gen(40), kF64);
  const detail::DiscreteVP vp(s);
  const double start = 0.4, alpha = vp.alpha(start), sigma = vp.sigma(start);
  ASSERT_GT(sigma, 0.3);
  ASSERT_LT(sigma, 0.99);
  SamplerOptions o = opts("dpm++2m", 4);
  o.start_time = start;
  o.absorb_rate = 0.0;
  Recorder rec;
  sample(s, rec.fn(), in, o, gen(9));
  const at::Tensor noise = at::randn({B, L, C}, gen(9), at::TensorOptions().dtype(at::kFloat)).to(at::kDouble);
  const at::Tensor m = in.absorbing_C.view({1, 1, C});
  const at::Tensor expected = m + alpha * (in.start_x0_BLC - m) + sigma * noise;
  EXPECT_LT(max_diff(target(rec.x[0], in), target(expected, in)), 1e-12);
  EXPECT_TRUE(at::equal(source(rec.x[0], in), source(in.anchor_BLC, in)));
  ASSERT_EQ(rec.t.size(), 4u);  // the final step makes no model call
  EXPECT_NEAR(rec.t[0][0].item<float>(), (start - 1.0 / 20.0) * 1000.0, 1e-3);
  EXPECT_NEAR(rec.t[1][0].item<float>(), (start - (start - 1.0 / 20.0) / 4.0 - 1.0 / 20.0) * 1000.0, 1e-3);

  // Absorb rate 1: a target token is m exactly when its uniform draw (after the noise) is under sigma.
  o.absorb_rate = 1.0;
  Recorder jumped;
  sample(s, jumped.fn(), in, o, gen(9));
  at::Generator g = gen(9);
  at::randn({B, L, C}, g, at::TensorOptions().dtype(at::kFloat));
  const at::Tensor at_m_BL = at::rand({B, L}, g, kF64) < sigma;
  const at::Tensor is_m_BL = (jumped.x[0] == m.expand({B, L, C})).all(-1);
  EXPECT_TRUE(at::equal(is_m_BL.masked_select(in.trg_mask_BL), at_m_BL.masked_select(in.trg_mask_BL)));
  EXPECT_GT(at_m_BL.masked_select(in.trg_mask_BL).sum().item<int64_t>(), 0);
  EXPECT_LT(at_m_BL.masked_select(in.trg_mask_BL).sum().item<int64_t>(), 6);
  const at::Tensor kept_BL1 = at_m_BL.logical_not().logical_and(in.trg_mask_BL).unsqueeze(-1);
  EXPECT_LT(max_diff(jumped.x[0].masked_select(kept_BL1.expand({B, L, C})),
                     expected.masked_select(kept_BL1.expand({B, L, C}))), 1e-12);

  // start_jumps = false: rate 1 or not, no token jumps, the start is the closed form everywhere.
  o.start_jumps = false;
  Recorder whole;
  sample(s, whole.fn(), in, o, gen(9));
  EXPECT_LT(max_diff(target(whole.x[0], in), target(expected, in)), 1e-12);
  o.start_jumps = true;

  // Errors: no x0 to start from, a sampler other than DPM-Solver++, a start at or before the end.
  SampleInputs none = make_inputs(true);
  Recorder r2;
  EXPECT_THROW(sample(s, r2.fn(), none, o, gen(9)), Error);
  o.sampler = "ddim";
  EXPECT_THROW(sample(s, r2.fn(), in, o, gen(9)), Error);
  o.sampler = "dpm++2m";
  o.start_time = 1.0 / 20.0;
  EXPECT_THROW(sample(s, r2.fn(), in, o, gen(9)), Error);
}

// SampleInputs::start_jump_BL (mask-predict rounds): exactly the given target positions start at m,
// whatever absorb_rate and start_jumps say; the others keep the closed form (no draw is spent on jumps).
TEST(Sampler, GivenJumpsReplaceTheDrawnOnes) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 20);
  SampleInputs in = make_inputs(true);
  in.start_x0_BLC = at::randn({B, L, C}, gen(40), kF64);
  in.start_jump_BL = at::zeros({B, L}, at::kBool);
  in.start_jump_BL.index_put_({0, L - 1}, true);
  in.start_jump_BL.index_put_({1, L - 2}, true);
  in.start_jump_BL.index_put_({1, 0}, true);  // a source position: the anchor stays there
  const detail::DiscreteVP vp(s);
  const double start = 0.4, alpha = vp.alpha(start), sigma = vp.sigma(start);
  SamplerOptions o = opts("dpm++2m", 4);
  o.start_time = start;
  o.absorb_rate = 1.0;
  Recorder rec;
  sample(s, rec.fn(), in, o, gen(9));
  const at::Tensor noise = at::randn({B, L, C}, gen(9), at::TensorOptions().dtype(at::kFloat)).to(at::kDouble);
  const at::Tensor m = in.absorbing_C.view({1, 1, C});
  const at::Tensor expected = at::where(in.start_jump_BL.unsqueeze(-1), m.expand({B, L, C}),
                                        m + alpha * (in.start_x0_BLC - m) + sigma * noise);
  EXPECT_LT(max_diff(target(rec.x[0], in), target(expected, in)), 1e-12);
  EXPECT_TRUE(at::equal(source(rec.x[0], in), source(in.anchor_BLC, in)));
  const at::Tensor is_m_BL = (rec.x[0] == m.expand({B, L, C})).all(-1);
  EXPECT_TRUE(at::equal(is_m_BL, in.start_jump_BL.logical_and(in.trg_mask_BL)));
  // A mask of the wrong shape is refused.
  in.start_jump_BL = at::zeros({B, L + 1}, at::kBool);
  Recorder bad;
  EXPECT_THROW(sample(s, bad.fn(), in, o, gen(9)), Error);
}

TEST(Sampler, TimeMappings) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 13);
  const SampleInputs in = make_inputs(false);
  SamplerOptions o = opts("dpm++2m", 4);
  Recorder up, v2;
  sample_from(s, up.fn(), in, o, make_x_T(in, 31), gen(1));
  o.time_mapping = "v2";
  sample_from(s, v2.fn(), in, o, make_x_T(in, 31), gen(1));
  // Upstream: (t - 1/N) 1000 = n 1000 / N on the grid; v2: t 1000 = (n + 1) 1000 / N.
  EXPECT_NEAR(up.t[0][0].item<float>(), 12000.0 / 13.0, 1e-3);
  EXPECT_NEAR(v2.t[0][0].item<float>(), 1000.0, 1e-3);
  EXPECT_NEAR(v2.t[1][0].item<float>(), 10000.0 / 13.0, 1e-3);
  o.time_mapping = "bogus";
  EXPECT_THROW(sample_from(s, up.fn(), in, o, make_x_T(in, 31), gen(1)), Error);
}

// --- Clamping ----------------------------------------------------------------------------------
TEST(Sampler, ClampToEmbeddingsPicksNearestRow) {
  // Rows: e0 = (0, 0), e1 = (1, 0), e2 = (0, 1), e3 = (10, 10). Squared distances:
  //   (1.2, 0.9):  e0 2.25, e1 0.85, e2 1.45          -> e1
  //   (-0.3, 0.1): e0 0.10, e1 1.70, e2 0.90          -> e0
  //   (0.2, 0.7):  e0 0.53, e1 1.13, e2 0.13          -> e2
  //   (8, 9.5):    e3 4.25                             -> e3
  //   (2, 2.1):    e1 5.41, e2 5.21, e3 126.41         -> e2 (x.e3 = 41 is the largest dot product)
  //   (0.45, 0.4): e0 0.3625, e1 0.4625, e2 0.5625     -> e0
  const at::Tensor emb =
      at::tensor(std::vector<double>{0, 0, 1, 0, 0, 1, 10, 10}, kF64).view({4, 2});
  const at::Tensor x =
      at::tensor(std::vector<double>{1.2, 0.9, -0.3, 0.1, 0.2, 0.7, 8, 9.5, 2, 2.1, 0.45, 0.4},
                 kF64)
          .view({2, 3, 2});
  const at::Tensor out = clamp_to_embeddings(x, emb);
  const std::vector<int64_t> ids = {1, 0, 2, 3, 2, 0};
  const at::Tensor want = emb.index_select(0, at::tensor(ids, at::kLong)).view({2, 3, 2});
  EXPECT_TRUE(at::equal(out, want)) << out;
  const at::Tensor out32 = clamp_to_embeddings(x.to(at::kFloat), emb.to(at::kFloat));
  EXPECT_EQ(out32.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(out32, want.to(at::kFloat)));
}

TEST(Sampler, ClampOptionRoundsEveryPrediction) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 10);
  SampleInputs in = make_inputs(false);
  in.embedding_VC = at::randn({6, C}, gen(32), kF64);
  SamplerOptions o = opts("ddim", 3);
  o.clamp = true;
  Recorder rec;
  const at::Tensor out = sample_from(s, rec.fn(), in, o, make_x_T(in, 33), gen(1));
  // Every target vector of the output (= the last x0) is a row of the embedding.
  const at::Tensor tgt = target(out, in).view({-1, C});
  for (int64_t i = 0; i < tgt.size(0); ++i) {
    EXPECT_TRUE((in.embedding_VC - tgt[i]).abs().sum(-1).eq(0).any().item<bool>()) << i;
  }
  EXPECT_TRUE(at::equal(source(out, in), source(in.anchor_BLC, in)));
  o.clamp = true;
  in.embedding_VC = at::Tensor();
  EXPECT_THROW(sample_from(s, rec.fn(), in, o, make_x_T(in, 33), gen(1)), Error);
}

// --- The discrete schedule seen continuously (P1-P2) -------------------------------------------
TEST(Sampler, DiscreteVPInterpolation) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 2000);
  const diffusion::detail::DiscreteVP vp(s);
  EXPECT_EQ(vp.total_n(), 2000);
  for (int n : {0, 1, 999, 1998, 1999}) {
    const double t = (n + 1) / 2000.0, ab = s.alphas_cumprod[n];
    EXPECT_NEAR(vp.alpha(t), std::sqrt(ab), 1e-12 * (1 + std::sqrt(ab))) << n;
    EXPECT_NEAR(vp.lambda(t), 0.5 * std::log(ab / (1 - ab)), 1e-9) << n;
    EXPECT_NEAR(vp.inverse_lambda(vp.lambda(t)), t, 1e-9) << n;
  }
  EXPECT_NEAR(vp.lambda(1.0), -7.707, 5e-4);
  EXPECT_NEAR(vp.lambda(1.0 / 2000), 2.105, 5e-4);
  // Between grid points log alpha is linear in t.
  const double la = 0.5 * (vp.log_alpha(0.5) + vp.log_alpha(0.5005));
  EXPECT_NEAR(vp.log_alpha(0.50025), la, 1e-14);
  EXPECT_NEAR(vp.inverse_lambda(vp.lambda(0.3333)), 0.3333, 1e-9);
  // Grids: endpoints 1 and 1/N; logSNR uniform in lambda; quadratic in sqrt(t).
  for (const char* skip : {"time_uniform", "logSNR", "time_quadratic"}) {
    const std::vector<double> ts = vp.time_steps(skip, 1.0, 1.0 / 2000, 8);
    ASSERT_EQ(ts.size(), 9u);
    EXPECT_NEAR(ts.front(), 1.0, 1e-9) << skip;
    EXPECT_NEAR(ts.back(), 1.0 / 2000, 1e-9) << skip;
    for (std::size_t k = 1; k < ts.size(); ++k) EXPECT_LT(ts[k], ts[k - 1]) << skip;
  }
  const std::vector<double> ls = vp.time_steps("logSNR", 1.0, 1.0 / 2000, 8);
  const double dl = (vp.lambda(1.0 / 2000) - vp.lambda(1.0)) / 8;
  for (std::size_t k = 1; k < ls.size(); ++k)
    EXPECT_NEAR(vp.lambda(ls[k]) - vp.lambda(ls[k - 1]), dl, 1e-9);
  const std::vector<double> qs = vp.time_steps("time_quadratic", 1.0, 1.0 / 2000, 8);
  EXPECT_NEAR(std::sqrt(qs[4]), 0.5 * (1.0 + std::sqrt(1.0 / 2000)), 1e-12);
  EXPECT_THROW(vp.time_steps("bogus", 1.0, 0.0005, 8), Error);
}

TEST(Sampler, Errors) {
  const NoiseSchedule s = NoiseSchedule::make("sqrt", 10);
  const SampleInputs in = make_inputs(false);
  Recorder rec;
  EXPECT_THROW(sample_from(s, rec.fn(), in, opts("euler", 5), make_x_T(in, 1), gen(1)), Error);
  EXPECT_THROW(sample_from(s, rec.fn(), in, opts("ddim", 0), make_x_T(in, 1), gen(1)), Error);
  SampleInputs bad = in;
  bad.trg_mask_BL = in.trg_mask_BL.to(at::kLong);
  EXPECT_THROW(sample_from(s, rec.fn(), bad, opts("ddim", 5), make_x_T(in, 1), gen(1)), Error);
}

}  // namespace
}  // namespace mds
