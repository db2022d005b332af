// Samplers (docs/math.md eq. P1-P6): set-up, re-anchoring, clamping, DDIM and ancestral sampling;
// DPM-Solver++ is in dpm_solver.cpp.
//
// Dimensions: B batch, L length, C embedding dim, V vocabulary; T schedule steps; S kept steps.
//
// P4, what every sampler shares:
//   x_T = m + N(0, I) on target positions (m = 0 without the soft absorbing state), the anchor on
//   the source. The forward process is x_t = m + sqrt(ab_t)(x0 - m) + sqrt(1 - ab_t) eps on target
//   positions: a plain VP process in y = x - m, so every sampler applies its formulas to y = x - m
//   and y0 = x0 - m and adds m back. The source positions always hold the anchor: after every model
//   call (its x0 too) and after every update. With clamping, every x0 prediction is replaced by its
//   nearest embedding row before it is anchored. DDIM and ancestral call the model at index n with
//   time n * 1000 / T; DPM-Solver++ as in dpm_solver.cpp.
#include "diffusion/sampler.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "core/config.h"
#include "core/error.h"
#include "core/torch_compat.h"
#include "diffusion/dpm_solver.h"

namespace mds::diffusion {

namespace detail {

at::Tensor SamplerContext::anchor(const at::Tensor& x_BLC) const {
  return at::where(trg_BL1, x_BLC, inputs.anchor_BLC);
}

at::Tensor SamplerContext::centre(const at::Tensor& x_BLC) const {
  return m_BLC.defined() ? x_BLC - m_BLC : x_BLC;
}

at::Tensor SamplerContext::uncentre(const at::Tensor& y_BLC) const {
  return m_BLC.defined() ? y_BLC + m_BLC : y_BLC;
}

at::Tensor SamplerContext::predict_x0(const at::Tensor& x_BLC, double model_t) const {
  const at::Tensor t_B = at::full({x_BLC.size(0)}, model_t,
                                  at::TensorOptions().dtype(at::kFloat).device(x_BLC.device()));
  at::Tensor x0_BLC = predict(x_BLC, t_B);
  MDS_CHECK(x0_BLC.defined() && x0_BLC.sizes() == x_BLC.sizes(),
            "sampler: the predictor must return x0 of shape ", x_BLC.sizes(), ", got ",
            x0_BLC.defined() ? x0_BLC.sizes() : at::IntArrayRef{});
  // A model run under bf16 autocast returns bf16: the solver's state, its history and the updates
  // stay in x's dtype (float32).
  x0_BLC = x0_BLC.to(dtype);
  if (options.clamp) x0_BLC = clamp_to_embeddings(x0_BLC, inputs.embedding_VC);
  return anchor(x0_BLC);
}

}  // namespace detail

namespace {

using detail::SamplerContext;

// The noise of one sampling run, drawn on the device the sampler runs on. On the CPU it is the
// caller's generator. On a GPU a [B, L, C] draw on the host and its copy would cost as much as a
// model call at small sizes, so the numbers come from a device generator of its own, seeded from the
// caller's CPU generator: a seed gives the same numbers on every run on that kind of device (not the
// CPU's numbers), and the device's default generator (training's noise, forward_process.cpp) is left
// alone.
class Noise {
 public:
  Noise(const at::Generator& generator, const c10::Device& device) : device_(device) {
    if (!generator.defined()) return;
    MDS_CHECK(generator.device().is_cpu(), "sampler: the generator must be a CPU generator, got ",
              generator.device());
    if (device.is_cpu()) {
      gen_ = generator;
      return;
    }
    const int64_t seed = at::randint(std::numeric_limits<int64_t>::max(), {1}, generator,
                                     at::TensorOptions().dtype(at::kLong)).item<int64_t>();
    at::Generator default_gen = at::globalContext().defaultGenerator(device);
    {
      std::lock_guard<std::mutex> lock(default_gen.mutex());
      gen_ = default_gen.clone();
    }
    std::lock_guard<std::mutex> lock(gen_->mutex());
    gen_->set_current_seed(static_cast<uint64_t>(seed));
  }

  // N(0, I) in float32 (the same numbers for any floating dtype of `like`), in like's dtype.
  at::Tensor randn_as(const at::Tensor& like) const {
    return at::randn(like.sizes(), gen_, at::TensorOptions().dtype(at::kFloat).device(device_)).to(like.scalar_type());
  }
  // U[0, 1) of shape [B, L], float32 on the GPU (float64 on the CPU, as before).
  at::Tensor rand_BL(int64_t B, int64_t L) const {
    return at::rand({B, L}, gen_, at::TensorOptions().dtype(device_.is_cpu() ? at::kDouble : at::kFloat).device(device_));
  }

 private:
  c10::Device device_;
  c10::optional<at::Generator> gen_;
};

// improved-diffusion's space_timesteps(T, [S]) with one section: round(k (T - 1)/(S - 1)),
// k = 0..S-1 (Python's round, half to even), so 0 and T - 1 are kept. One step keeps T - 1 (a
// single jump from full noise), where space_timesteps would keep 0.
std::vector<int64_t> respaced_steps(int64_t T, int64_t S) {
  S = std::min(S, T);
  if (S >= T) {
    std::vector<int64_t> all(static_cast<std::size_t>(T));
    for (int64_t t = 0; t < T; ++t) all[static_cast<std::size_t>(t)] = t;
    return all;
  }
  if (S == 1) return {T - 1};
  const double stride = static_cast<double>(T - 1) / static_cast<double>(S - 1);
  std::vector<int64_t> kept;
  double cur = 0.0;
  for (int64_t k = 0; k < S; ++k) {
    kept.push_back(static_cast<int64_t>(std::nearbyint(cur)));
    cur += stride;
  }
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  return kept;  // increasing
}

double model_time_of(const NoiseSchedule& s, int64_t index) {
  return s.model_time(static_cast<double>(index));
}

// P5 (DDIM, eta = 0) on the kept steps s_{S-1} > ... > s_0, jumping from s_k to s_{k-1}:
//   eps = (y / sqrt(ab_{s_k}) - y0) / sqrt(1 / ab_{s_k} - 1),
//   y'  = sqrt(ab_{s_{k-1}}) y0 + sqrt(1 - ab_{s_{k-1}}) eps,      ab_{s_{-1}} = 1 (so y' = y0).
at::Tensor ddim(const SamplerContext& ctx, at::Tensor x_BLC) {
  const NoiseSchedule& s = ctx.schedule;
  const std::vector<int64_t> kept = respaced_steps(s.steps, ctx.options.steps);
  for (std::size_t i = kept.size(); i-- > 0;) {
    const std::size_t t = static_cast<std::size_t>(kept[i]);
    const at::Tensor x0_BLC = ctx.predict_x0(x_BLC, model_time_of(s, kept[i]));
    if (i == 0) return x0_BLC;  // the jump to ab = 1 lands on x0 exactly
    const double ab_t = s.alphas_cumprod[t];
    const double ab_prev = s.alphas_cumprod[static_cast<std::size_t>(kept[i - 1])];
    const at::Tensor y0_BLC = ctx.centre(x0_BLC);
    const at::Tensor eps_BLC =
        (std::sqrt(1.0 / ab_t) * ctx.centre(x_BLC) - y0_BLC) / std::sqrt(1.0 / ab_t - 1.0);
    const at::Tensor y_BLC = std::sqrt(ab_prev) * y0_BLC + std::sqrt(1.0 - ab_prev) * eps_BLC;
    x_BLC = ctx.anchor(ctx.uncentre(y_BLC));
  }
  return x_BLC;  // not reached: kept is never empty
}

// P6 (ancestral, fixed-large variance) on the kept steps, as SpacedDiffusion:
//   beta'_k = 1 - ab_{s_k} / ab_{s_{k-1}}  (ab_{s_{-1}} = 1),  ab'_k = prod_{j<=k} (1 - beta'_j),
//   mu = coef1'_k y0 + coef2'_k y,  y' = mu + 1[k > 0] sqrt(var'_k) z,
//   var'_k = beta'_k for k > 0
//   ("fixed-large": var' = [posterior_variance'_1, beta'_1, ..., beta'_{S-1}]).
// Discrete noise (DiffuSeq-v2): a target token jumps to m with probability
// absorb_rate 1[k > 0] sqrt(var'_k).
at::Tensor ancestral(const SamplerContext& ctx, at::Tensor x_BLC, const Noise& noise) {
  const NoiseSchedule& s = ctx.schedule;
  const std::vector<int64_t> kept = respaced_steps(s.steps, ctx.options.steps);
  const std::size_t S = kept.size();
  // With every step kept, the schedule's own arrays (bit for bit DiffuSeq's p_sample).
  NoiseSchedule spaced;
  if (static_cast<int64_t>(S) == s.steps) {
    spaced = s;
  } else {
    spaced.steps = static_cast<int64_t>(S);
    spaced.betas.resize(S);
    double last_ab = 1.0;
    for (std::size_t k = 0; k < S; ++k) {
      const double ab = s.alphas_cumprod[static_cast<std::size_t>(kept[k])];
      spaced.betas[k] = 1.0 - ab / last_ab;
      last_ab = ab;
    }
    double cumprod = 1.0;
    for (std::size_t k = 0; k < S; ++k) {
      const double beta = spaced.betas[k], ab_prev = cumprod;
      cumprod *= 1.0 - beta;
      const double ab = cumprod;
      spaced.posterior_mean_coef1.push_back(beta * std::sqrt(ab_prev) / (1.0 - ab));
      spaced.posterior_mean_coef2.push_back((1.0 - ab_prev) * std::sqrt(1.0 - beta) / (1.0 - ab));
    }
  }
  const bool discrete = ctx.options.discrete_noise;
  const int64_t B = x_BLC.size(0), L = x_BLC.size(1);
  for (std::size_t k = S; k-- > 0;) {
    const at::Tensor x0_BLC = ctx.predict_x0(x_BLC, model_time_of(s, kept[k]));
    const double c1 = spaced.posterior_mean_coef1[k], c2 = spaced.posterior_mean_coef2[k];
    at::Tensor y_BLC = c1 * ctx.centre(x0_BLC) + c2 * ctx.centre(x_BLC);
    // Fixed-large variance at k > 0 is beta'_k (posterior_variance'_1 sits at k = 0, unused).
    const double std_k = k > 0 ? std::sqrt(spaced.betas[k]) : 0.0;
    if (k > 0) y_BLC = y_BLC + std_k * noise.randn_as(x_BLC);
    x_BLC = ctx.uncentre(y_BLC);
    if (discrete && k > 0) {
      const at::Tensor jump_BL1 = (noise.rand_BL(B, L) < ctx.options.absorb_rate * std_k).unsqueeze(-1);
      x_BLC = at::where(jump_BL1, ctx.m_BLC.expand_as(x_BLC), x_BLC);
    }
    x_BLC = ctx.anchor(x_BLC);
  }
  return x_BLC;
}

SamplerContext make_context(const NoiseSchedule& schedule, const X0Predictor& predict,
                            const SampleInputs& in, const SamplerOptions& options) {
  MDS_CHECK(static_cast<bool>(predict), "sampler: no predictor");
  MDS_CHECK(
      schedule.steps >= 1 && static_cast<int64_t>(schedule.alphas_cumprod.size()) == schedule.steps,
      "sampler: the noise schedule is not initialised");
  MDS_CHECK(in.anchor_BLC.defined() && in.anchor_BLC.dim() == 3 &&
                at::isFloatingType(in.anchor_BLC.scalar_type()),
            "sampler: anchor_BLC must be a floating [B, L, C] tensor");
  const int64_t B = in.anchor_BLC.size(0), L = in.anchor_BLC.size(1), C = in.anchor_BLC.size(2);
  MDS_CHECK(in.trg_mask_BL.defined() && in.trg_mask_BL.scalar_type() == at::kBool &&
                in.trg_mask_BL.dim() == 2 && in.trg_mask_BL.size(0) == B &&
                in.trg_mask_BL.size(1) == L,
            "sampler: trg_mask_BL must be a bool [", B, ", ", L, "] tensor");
  if (in.absorbing_C.defined()) {
    MDS_CHECK(in.absorbing_C.dim() == 1 && in.absorbing_C.size(0) == C,
              "sampler: absorbing_C must be [", C, "], got ", in.absorbing_C.sizes());
  }
  if (options.clamp) {
    MDS_CHECK(
        in.embedding_VC.defined() && in.embedding_VC.dim() == 2 && in.embedding_VC.size(1) == C,
        "sampler: clamping needs embedding_VC of shape [V, ", C, "]");
  }
  if (options.discrete_noise) {
    MDS_CHECK(options.sampler == "ancestral",
              "sampler: discrete_noise applies to the ancestral sampler only, not \"",
              options.sampler, "\"");
    MDS_CHECK(in.absorbing_C.defined(), "sampler: discrete_noise needs the absorbing state m");
    MDS_CHECK(options.absorb_rate >= 0.0, "sampler: absorb_rate must be >= 0, got ",
              options.absorb_rate);
  }
  MDS_CHECK(options.steps >= 1, "sampler: sample.steps must be >= 1, got ", options.steps);

  SamplerContext ctx{schedule, predict, in, options, {}, {}, in.anchor_BLC.scalar_type()};
  ctx.trg_BL1 = in.trg_mask_BL.to(in.anchor_BLC.device()).unsqueeze(-1);
  if (in.absorbing_C.defined()) {
    ctx.m_BLC = in.absorbing_C.detach().to(in.anchor_BLC.device(), ctx.dtype).view({1, 1, C});
  }
  return ctx;
}

}  // namespace

at::Tensor clamp_to_embeddings(const at::Tensor& x_BLC, const at::Tensor& embedding_VC) {
  MDS_CHECK(x_BLC.defined() && x_BLC.dim() == 3, "clamp_to_embeddings: x must be [B, L, C]");
  MDS_CHECK(
      embedding_VC.defined() && embedding_VC.dim() == 2 && embedding_VC.size(1) == x_BLC.size(2),
      "clamp_to_embeddings: embedding must be [V, ", x_BLC.size(2), "]");
  const int64_t B = x_BLC.size(0), L = x_BLC.size(1), C = x_BLC.size(2);
  // Distances in at least float32 (half precision would blur near ties), even when called under autocast.
  const compat::NoAutocast fp32_distances(x_BLC);
  const auto work = x_BLC.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor emb_VC = embedding_VC.detach().to(x_BLC.device(), work);
  const at::Tensor emb_sq_V = emb_VC.pow(2).sum(-1);
  const at::Tensor x_NC = x_BLC.detach().reshape({B * L, C}).to(work);
  // ||E_v||^2 - 2 x.E_v + ||x||^2 in row chunks: [chunk, V] at a time, never [B, L, V, C].
  constexpr int64_t kChunk = 2048;
  std::vector<at::Tensor> ids;
  for (int64_t start = 0; start < B * L; start += kChunk) {
    const at::Tensor xc_NC = x_NC.narrow(0, start, std::min(kChunk, B * L - start));
    const at::Tensor dist_NV =
        (emb_sq_V.unsqueeze(0) - 2.0 * at::matmul(xc_NC, emb_VC.t()) + xc_NC.pow(2).sum(-1, true))
            .clamp_min(0.0);
    ids.push_back(dist_NV.argmin(-1));
  }
  const at::Tensor id_N =
      ids.empty() ? at::empty({0}, x_NC.options().dtype(at::kLong)) : at::cat(ids);
  return embedding_VC.detach()
      .to(x_BLC.device(), x_BLC.scalar_type())
      .index_select(0, id_N)
      .view({B, L, C});
}

at::Tensor sample_from(const NoiseSchedule& schedule, const X0Predictor& predict,
                       const SampleInputs& inputs, const SamplerOptions& options,
                       at::Tensor x_T_BLC, at::Generator generator) {
  at::NoGradGuard no_grad;
  const SamplerContext ctx = make_context(schedule, predict, inputs, options);
  MDS_CHECK(x_T_BLC.defined() && x_T_BLC.sizes() == inputs.anchor_BLC.sizes(),
            "sampler: x_T must have the anchor's shape ", inputs.anchor_BLC.sizes());
  at::Tensor x_BLC = ctx.anchor(x_T_BLC.to(inputs.anchor_BLC.device(), ctx.dtype));
  const std::string& kind = options.sampler;
  if (kind == "dpm++2m") return detail::dpm_solver_pp(ctx, x_BLC, 2);
  if (kind == "dpm++3m") return detail::dpm_solver_pp(ctx, x_BLC, 3);
  if (kind == "dpm++1") return detail::dpm_solver_pp(ctx, x_BLC, 1);  // first order (= DDIM), tests
  if (kind == "ddim") return ddim(ctx, x_BLC);
  if (kind == "ancestral") return ancestral(ctx, x_BLC, Noise(generator, x_BLC.device()));
  fail("sampler: unknown sampler \"", kind, "\" (known: dpm++2m, dpm++3m, ddim, ancestral)");
}

at::Tensor sample(const NoiseSchedule& schedule, const X0Predictor& predict,
                  const SampleInputs& inputs, const SamplerOptions& options,
                  at::Generator generator) {
  MDS_CHECK(inputs.anchor_BLC.defined(), "sampler: anchor_BLC is undefined");
  const Noise noise(generator, inputs.anchor_BLC.device());
  const at::Tensor m_11C =
      inputs.absorbing_C.defined()
          ? inputs.absorbing_C.detach().to(inputs.anchor_BLC.device(), inputs.anchor_BLC.scalar_type()).view({1, 1, -1})
          : at::Tensor();
  // x_T = m + N(0, I) on target positions; sample_from puts the anchor on the source.
  at::Tensor x_T_BLC = noise.randn_as(inputs.anchor_BLC);
  if (options.start_time < 1.0) {
    // SDEdit: the given x0 through the forward process (F2, F3) to the start time.
    MDS_CHECK(options.sampler.rfind("dpm++", 0) == 0, "sampler: sample.start_time < 1 needs a DPM-Solver++ sampler, not \"",
              options.sampler, "\"");
    MDS_CHECK(inputs.start_x0_BLC.defined() && inputs.start_x0_BLC.sizes() == inputs.anchor_BLC.sizes(),
              "sampler: sample.start_time < 1 needs start_x0_BLC of the anchor's shape");
    const detail::DiscreteVP vp(schedule);  // dpm_solver_pp checks that the start comes before the end
    const double alpha = vp.alpha(options.start_time), sigma = vp.sigma(options.start_time);
    const at::Tensor x0_BLC = inputs.start_x0_BLC.to(x_T_BLC.device(), x_T_BLC.scalar_type());
    x_T_BLC = m_11C.defined() ? m_11C + alpha * (x0_BLC - m_11C) + sigma * x_T_BLC : alpha * x0_BLC + sigma * x_T_BLC;
    if (m_11C.defined() && inputs.start_jump_BL.defined()) {
      MDS_CHECK(inputs.start_jump_BL.scalar_type() == at::kBool &&
                    inputs.start_jump_BL.sizes() == inputs.anchor_BLC.sizes().slice(0, 2),
                "sampler: start_jump_BL must be a bool [B, L] tensor");
      const at::Tensor jump_BL1 = inputs.start_jump_BL.to(x_T_BLC.device()).unsqueeze(-1);
      x_T_BLC = at::where(jump_BL1, m_11C.expand_as(x_T_BLC), x_T_BLC);
    } else if (m_11C.defined() && options.start_jumps && options.absorb_rate > 0) {
      const at::Tensor jump_BL1 = (noise.rand_BL(x_T_BLC.size(0), x_T_BLC.size(1)) < options.absorb_rate * sigma).unsqueeze(-1);
      x_T_BLC = at::where(jump_BL1, m_11C.expand_as(x_T_BLC), x_T_BLC);
    }
  } else if (m_11C.defined()) {
    x_T_BLC = x_T_BLC + m_11C;
  }
  return sample_from(schedule, predict, inputs, options, x_T_BLC, generator);
}

}  // namespace mds::diffusion
