// Mixture-of-experts feed-forward layer.
//
// Dimensions: N tokens, D model dim, E experts, A = k experts per token, F expert hidden.
#include "model/moe_layer.h"

#include <cmath>

#include "core/error.h"
#include "core/torch_compat.h"
#include "kernels/moe/moe.h"
#include "kernels/moe/moe_cpu.h"
#include "model/router.h"

namespace mds::model {

MoeLayerImpl::MoeLayerImpl(const MoeOptions& options) : options_(options) {
  const int64_t D = options.dim, F = options.ffn_dim, E = options.experts;
  MDS_CHECK(D >= 1, "MoeLayer: dim must be >= 1, got ", D);
  MDS_CHECK(F >= 1, "MoeLayer: ffn_dim must be >= 1, got ", F);
  MDS_CHECK(E >= 1, "MoeLayer: experts must be >= 1, got ", E);
  // With one expert top_k is moot (the default top_k = 2 must still work with moe.experts = 1).
  MDS_CHECK(E == 1 || (options.top_k >= 1 && options.top_k <= E), "MoeLayer: top_k must be in [1, ",
            E, "], got ", options.top_k);
  MDS_CHECK(options.capacity_factor >= 0, "MoeLayer: capacity_factor must be >= 0, got ",
            options.capacity_factor);
  MDS_CHECK(options.jitter >= 0 && options.jitter < 1, "MoeLayer: jitter must be in [0, 1), got ",
            options.jitter);
  const int64_t shards = options.expert_shards;
  MDS_CHECK(shards >= 1 && E % shards == 0 && options.expert_shard >= 0 && options.expert_shard < shards,
            "MoeLayer: ", E, " experts cannot be split into ", shards, " equal shards (shard ", options.expert_shard,
            ")");
  MDS_CHECK(shards == 1 || (E > 1 && options.capacity_factor == 0),
            "MoeLayer: expert parallelism needs several experts and no capacity (moe.capacity_factor = 0)");
  if (E == 1) options_.top_k = 1;

  const double s = options.init_std;
  // No router for a single expert: it would be a parameter that never receives a gradient.
  if (E > 1) router_DE = register_parameter("router", torch::randn({D, E}) * s);
  // A shard takes its slice of what the whole layer draws, so that a run's start does not depend on
  // how its experts are spread.
  const int64_t El = E / shards, first = options.expert_shard * El;
  auto mine = [&](const at::Tensor& all) { return shards == 1 ? all : all.slice(0, first, first + El).clone(); };
  w1_EDF = register_parameter("w1", mine(torch::randn({E, D, F}) * s));
  b1_EF = register_parameter("b1", torch::zeros({El, F}));
  w2_EFD = register_parameter("w2", mine(torch::randn({E, F, D}) * s));
  b2_ED = register_parameter("b2", torch::zeros({El, D}));
}

void MoeLayerImpl::set_expert_exchange(ExpertExchange* group) {
  MDS_CHECK(group == nullptr || (group->world_size() == options_.expert_shards &&
                                 group->rank() == options_.expert_shard),
            "MoeLayer: shard ", options_.expert_shard, " of ", options_.expert_shards, " cannot exchange with rank ",
            group ? group->rank() : 0, " of ", group ? group->world_size() : 1);
  exchange_ = group;
}

MoeLayerOutput MoeLayerImpl::forward(const at::Tensor& x_ND) {
  const int64_t D = options_.dim, E = options_.experts, k = options_.top_k;
  MDS_CHECK(x_ND.defined() && x_ND.dim() == 2 && x_ND.size(1) == D,
            "MoeLayer: x_ND must be [N, D] with D = ", D, ", got ",
            x_ND.defined() ? x_ND.sizes() : at::IntArrayRef{});
  const int64_t N = x_ND.size(0);
  const auto f32 = x_ND.options().dtype(at::kFloat);
  MoeLayerOutput out;

  if (E == 1) {
    at::Tensor h_NF = at::gelu(at::addmm(b1_EF[0], x_ND, w1_EDF[0]));
    out.y_ND = at::addmm(b2_ED[0], h_NF, w2_EFD[0]);
    out.aux_loss = at::zeros({}, f32);
    out.z_loss = at::zeros({}, f32);
    out.tokens_per_expert_E = at::full({1}, N, x_ND.options().dtype(at::kLong));
    out.dropped = at::zeros({}, x_ND.options().dtype(at::kLong));
    return out;
  }

  RouterOutput r;
  {
    // Router matmul, softmax and top-k in float32 even under autocast: bf16 logits lose the small
    // differences between experts (algorithms.md 4.1). One pass, no host sync.
    compat::NoAutocast fp32_router(x_ND);
    at::Tensor router_in_ND = x_ND.to(at::kFloat);
    if (is_training() && options_.jitter > 0)
      router_in_ND = router_in_ND * at::empty_like(router_in_ND)
                                        .uniform_(1 - options_.jitter, 1 + options_.jitter);
    r = route(at::matmul(router_in_ND, router_DE.to(at::kFloat)), k, options_.renormalize);
  }

  // Capacity as in DeepSpeed (algorithms.md 4.4): ceil(cf * k * N / E) assignments per expert.
  int64_t capacity = -1;
  if (options_.capacity_factor > 0)
    capacity = static_cast<int64_t>(
        std::ceil(options_.capacity_factor * static_cast<double>(k * N) / static_cast<double>(E)));
  kernels::MoeDispatchStats stats;
  const kernels::ExpertWeights experts{w1_EDF, b1_EF, w2_EFD, b2_ED};
  const at::Tensor weight_NA = r.weight_NA.to(x_ND.scalar_type());
  if (options_.expert_shards > 1) {
    MDS_CHECK(exchange_ != nullptr, "MoeLayer: a sharded layer needs its group (set_expert_exchange)");
    out.y_ND = moe_ffn_expert_parallel(*exchange_, x_ND, experts, r.expert_NA, weight_NA, E);
    // This rank's assignments per expert, as the unsharded layer counts them (dropless: none dropped).
    stats.tokens_per_expert_E = at::bincount(r.expert_NA.reshape({-1}).to(at::kLong), {}, E);
    stats.dropped = at::zeros({}, x_ND.options().dtype(at::kLong));
  } else {
    out.y_ND = options_.sorted_dispatch
                   ? kernels::detail::moe_ffn_sorted(x_ND, experts, r.expert_NA, weight_NA, capacity, &stats)
                   : kernels::moe_ffn(x_ND, experts, r.expert_NA, weight_NA, capacity, &stats);
  }
  out.aux_loss = r.aux_loss;
  out.z_loss = r.z_loss;
  out.tokens_per_expert_E = stats.tokens_per_expert_E;
  out.dropped = stats.dropped;
  return out;
}

int64_t MoeLayerImpl::parameter_count() const {
  const int64_t D = options_.dim, F = options_.ffn_dim, E = options_.experts;
  const int64_t router = E > 1 ? D * E : 0;
  return router + E * (D * F + F + F * D + D);
}

int64_t MoeLayerImpl::active_parameter_count() const {
  const int64_t D = options_.dim, F = options_.ffn_dim, E = options_.experts;
  const int64_t router = E > 1 ? D * E : 0;
  return router + options_.top_k * (D * F + F + F * D + D);
}

}  // namespace mds::model
