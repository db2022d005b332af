// MoE dispatch entry point: argument checks, then the path for the tensors' device.
//
// Dimensions: N tokens, D model dim, E experts, A = k active experts per token, F expert hidden.
#include "kernels/moe/moe.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/torch_compat.h"
#include "kernels/moe/moe_cpu.h"
#include "kernels/moe/moe_grouped.h"

namespace mds::kernels {
namespace detail {
namespace {

void check_shape(const char* fn, const char* name, const at::Tensor& t, at::IntArrayRef expected,
                 const char* legend) {
  MDS_CHECK(t.defined(), fn, ": ", name, " is undefined");
  MDS_CHECK(t.sizes() == expected, fn, ": ", name, " must be ", legend, " = ", expected, ", got ",
            t.sizes());
}

void check_device(const char* fn, const char* name, const at::Tensor& t, const at::Tensor& x) {
  MDS_CHECK(t.device() == x.device(), fn, ": ", name, " is on ", t.device(), " but x_ND is on ",
            x.device());
}

}  // namespace

void check_expert_ids(const char* fn, const at::Tensor& expert_NA, int64_t num_experts) {
  MDS_CHECK(expert_NA.defined(), fn, ": expert_NA is undefined");
  MDS_CHECK(expert_NA.dim() == 2, fn, ": expert_NA must be [N, A], got ", expert_NA.sizes());
  MDS_CHECK(expert_NA.scalar_type() == at::kLong, fn, ": expert_NA must be int64, got ",
            expert_NA.scalar_type(), " of shape ", expert_NA.sizes());
  MDS_CHECK(num_experts >= 1, fn, ": the number of experts must be >= 1, got ", num_experts);
  if (expert_NA.numel() == 0) return;
  if (!expert_NA.device().is_cpu()) {
    // min/max would be a host sync per call; the assertion fails the next synchronising call instead
    // (and keeps an out-of-range id from indexing out of bounds in the kernels before then).
    at::_assert_async(at::logical_and(expert_NA >= 0, expert_NA < num_experts).all());
    return;
  }
  const int64_t lo = expert_NA.min().item<int64_t>(), hi = expert_NA.max().item<int64_t>();
  MDS_CHECK(lo >= 0 && hi < num_experts, fn, ": expert_NA (shape ", expert_NA.sizes(),
            ") has ids in [", lo, ", ", hi, "], outside [0, E) with E = ", num_experts);
}

void check_moe_inputs(const char* fn, const at::Tensor& x_ND, const ExpertWeights& experts,
                      const at::Tensor& expert_NA, const at::Tensor& weight_NA) {
  MDS_CHECK(x_ND.defined(), fn, ": x_ND is undefined");
  MDS_CHECK(x_ND.dim() == 2, fn, ": x_ND must be [N, D], got ", x_ND.sizes());
  MDS_CHECK(at::isFloatingType(x_ND.scalar_type()), fn, ": x_ND must be floating, got ",
            x_ND.scalar_type());
  MDS_CHECK(experts.w1_EDF.defined() && experts.w1_EDF.dim() == 3, fn,
            ": w1_EDF must be [E, D, F], got ",
            experts.w1_EDF.defined() ? experts.w1_EDF.sizes() : at::IntArrayRef{});
  const int64_t N = x_ND.size(0), D = x_ND.size(1);
  const int64_t E = experts.w1_EDF.size(0), F = experts.w1_EDF.size(2);
  MDS_CHECK(E >= 1, fn, ": w1_EDF must have at least one expert, got ", experts.w1_EDF.sizes());
  check_shape(fn, "w1_EDF", experts.w1_EDF, {E, D, F}, "[E, D, F]");
  check_shape(fn, "b1_EF", experts.b1_EF, {E, F}, "[E, F]");
  check_shape(fn, "w2_EFD", experts.w2_EFD, {E, F, D}, "[E, F, D]");
  check_shape(fn, "b2_ED", experts.b2_ED, {E, D}, "[E, D]");
  const std::pair<const char*, const at::Tensor*> params[] = {{"w1_EDF", &experts.w1_EDF},
                                                              {"b1_EF", &experts.b1_EF},
                                                              {"w2_EFD", &experts.w2_EFD},
                                                              {"b2_ED", &experts.b2_ED}};
  // Under autocast the input may already be in the compute dtype (a bf16 residual stream,
  // model.bf16_residual) while the master weights stay float32: every path casts them (autocast in
  // the per-expert products, explicit casts in the grouped one).
  const c10::DeviceType device = x_ND.device().type();
  const bool autocast_input =
      compat::autocast_enabled(device) && x_ND.scalar_type() == compat::autocast_dtype(device);
  for (const auto& [name, t] : params) {
    MDS_CHECK(t->scalar_type() == x_ND.scalar_type() || (autocast_input && t->scalar_type() == at::kFloat), fn, ": ",
              name, " is ", t->scalar_type(), " but x_ND is ", x_ND.scalar_type());
    check_device(fn, name, *t, x_ND);
  }

  MDS_CHECK(expert_NA.defined(), fn, ": expert_NA is undefined");
  MDS_CHECK(expert_NA.dim() == 2 && expert_NA.size(0) == N, fn,
            ": expert_NA must be [N, A] with N = ", N, ", got ", expert_NA.sizes());
  const int64_t A = expert_NA.size(1);
  check_shape(fn, "weight_NA", weight_NA, {N, A}, "[N, A]");
  MDS_CHECK(at::isFloatingType(weight_NA.scalar_type()), fn, ": weight_NA must be floating, got ",
            weight_NA.scalar_type());
  check_device(fn, "expert_NA", expert_NA, x_ND);
  check_device(fn, "weight_NA", weight_NA, x_ND);
  check_expert_ids(fn, expert_NA, E);
}

}  // namespace detail

at::Tensor moe_ffn(const at::Tensor& x_ND, const ExpertWeights& experts,
                   const at::Tensor& expert_NA, const at::Tensor& weight_NA, int64_t capacity,
                   MoeDispatchStats* stats) {
  detail::check_moe_inputs("moe_ffn", x_ND, experts, expert_NA, weight_NA);
  // CUDA with bf16 expert products (autocast) and a LibTorch with the grouped kernel: grouped GEMMs,
  // no host sync (1.8x a dense FFN of the active width vs 4.2x for the loop, H100, N = 16384).
  // Elsewhere the per-expert loop: on the CPU it is what training always used, and for float32 on
  // CUDA LibTorch 2.11 has no grouped kernel (its _grouped_mm loops and syncs too), where the loop
  // measured faster (26.7 vs 31.4 ms a step).
  if (detail::grouped_kernel_applies(x_ND))
    return detail::moe_ffn_grouped(x_ND, experts, expert_NA, weight_NA, capacity, stats);
  return detail::moe_ffn_sorted(x_ND, experts, expert_NA, weight_NA, capacity, stats);
}

}  // namespace mds::kernels
