#include "diffusion/forward_process.h"

#include <torch/torch.h>

#include <cmath>

#include "core/host_to_device.h"

namespace mds::diffusion {

namespace {
// The noise is drawn where it is used: on the CPU from the run's generator, on a GPU from that
// device's generator (seeded with the run, saved in its checkpoints). Drawing millions of normals a
// step on the host and copying them over cost a GPU run a fifth of its step.
at::Generator noise_generator(const torch::Tensor& like, const at::Generator& gen) {
  return like.device().is_cpu() ? gen : at::globalContext().defaultGenerator(like.device());
}
torch::Tensor randn_like_on(const torch::Tensor& like, const at::Generator& gen) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(like.device());
  return at::randn(like.sizes(), noise_generator(like, gen), opts).to(like.scalar_type());
}
torch::Tensor rand_on(at::IntArrayRef sizes, const torch::Tensor& like, const at::Generator& gen) {
  return at::rand(sizes, noise_generator(like, gen), torch::TensorOptions().dtype(torch::kFloat).device(like.device()));
}
}  // namespace

Noised noise_batch(const NoiseSchedule& s, const torch::Tensor& emb_BLC, const torch::Tensor& t_B,
                   const torch::Tensor& trg_mask_BL, const torch::Tensor& absorbing_C, const ForwardOptions& o,
                   at::Generator gen) {
  const auto dtype = emb_BLC.scalar_type();
  const auto B = emb_BLC.size(0);
  Noised out;
  // F1: x0 ~ N(emb, sigma_0^2), sigma_0 = sqrt(1 - ab_0).
  out.x0_BLC = emb_BLC + s.sqrt_one_minus_alphas_cumprod[0] * randn_like_on(emb_BLC, gen);

  // Looked up where t is (the CPU in training: no sync), then sent.
  const auto device = emb_BLC.device();
  auto sqrt_ab = to_device_async(NoiseSchedule::gather(s.sqrt_alphas_cumprod, t_B, dtype), device).view({B, 1, 1});
  auto sqrt_1m =
      to_device_async(NoiseSchedule::gather(s.sqrt_one_minus_alphas_cumprod, t_B, dtype), device).view({B, 1, 1});
  const bool absorbing = o.soft_absorbing && absorbing_C.defined();
  auto m = absorbing ? absorbing_C.to(dtype).view({1, 1, -1}) : torch::zeros({1, 1, emb_BLC.size(2)}, emb_BLC.options());

  // F2: the mean drifts toward m instead of 0.
  auto x_t = m + sqrt_ab * (out.x0_BLC - m) + sqrt_1m * randn_like_on(emb_BLC, gen);
  auto trg = trg_mask_BL.unsqueeze(-1);
  if (absorbing && o.absorb_rate > 0) {
    // F3: whole target tokens jump to m with probability gamma * sqrt(1 - ab_t).
    auto p_B1 = (o.absorb_rate * sqrt_1m.view({B, 1})).to(torch::kFloat);
    out.absorbed_BL = (rand_on({B, emb_BLC.size(1)}, emb_BLC, gen) < p_B1).logical_and(trg_mask_BL);
    x_t = torch::where(out.absorbed_BL.unsqueeze(-1), m.expand_as(x_t), x_t);
  } else {
    out.absorbed_BL = torch::zeros_like(trg_mask_BL);
  }
  out.x_t_BLC = torch::where(trg, x_t, out.x0_BLC);  // the source stays the anchor
  return out;
}

}  // namespace mds::diffusion
