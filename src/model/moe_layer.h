// Mixture-of-experts feed-forward layer: fp32 router (also under autocast), top-k routing, sorted
// expert dispatch (kernels/moe: grouped GEMMs on CUDA under autocast).
//
// Dimensions: N tokens, D model dim, E experts, A = k experts per token, F expert hidden.
//
// y_n = sum_a weight_na FFN_{expert_na}(x_n) (docs/math.md eq. M1, M4); the residual and the norm
// live outside. The auxiliary losses come back unweighted; the model weights them
// (moe.aux_loss_weight, moe.z_loss_weight) and averages them over layers.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "model/expert_parallel.h"

namespace mds::model {

struct MoeOptions {
  int64_t dim = 0, ffn_dim = 0, experts = 8, top_k = 2;
  bool renormalize = true;
  double capacity_factor = 0.0;  // 0 = dropless; > 0: capacity ceil(cf * k * N / E) per expert
  double jitter = 0.0;  // multiplicative router-input jitter U(1-eps, 1+eps), training only
  double init_std = 0.02;
  // Always the one-GEMM-per-expert loop (kernels::detail::moe_ffn_sorted), whatever moe_ffn would
  // choose: bench/moe_layer_bench compares the two.
  bool sorted_dispatch = false;
  // Expert parallelism (model/expert_parallel.h): the experts split into `expert_shards` equal shards,
  // this layer holding shard `expert_shard` (experts [shard*E/shards, (shard+1)*E/shards)); forward
  // then needs the group (set_expert_exchange) and is dropless. 1 = every expert here.
  int64_t expert_shards = 1, expert_shard = 0;
};

struct MoeLayerOutput {
  at::Tensor y_ND;                 // x's dtype
  at::Tensor aux_loss, z_loss;     // float32 scalars, unweighted (0 when experts == 1)
  // On x's device, so that collecting them costs no host sync (.item() only where logged).
  at::Tensor tokens_per_expert_E;  // int64 [E]: assignments each expert received after dropping
  at::Tensor dropped;              // int64 0-dim: assignments dropped by the capacity
};

// Parameters: "router" [D, E] (absent when experts == 1), "w1" [E, D, F], "b1" [E, F],
// "w2" [E, F, D], "b2" [E, D]. With experts == 1 the layer is a dense FFN: no routing; top_k and
// the capacity are ignored. Sharded, the expert parameters hold this shard's E/shards experts, with
// the values the whole layer would give them from the same seed.
class MoeLayerImpl : public torch::nn::Module {
 public:
  explicit MoeLayerImpl(const MoeOptions& options);

  MoeLayerOutput forward(const at::Tensor& x_ND);

  // The group a sharded layer exchanges tokens with (not owned; it must outlive every forward and
  // backward). Its world size must be the number of shards, its rank this shard.
  void set_expert_exchange(ExpertExchange* group);

  int64_t parameter_count() const;
  // Parameters one token uses: the router plus k experts.
  int64_t active_parameter_count() const;
  const MoeOptions& options() const { return options_; }

  at::Tensor router_DE, w1_EDF, b1_EF, w2_EFD, b2_ED;

 private:
  MoeOptions options_;
  ExpertExchange* exchange_ = nullptr;
};
TORCH_MODULE(MoeLayer);

}  // namespace mds::model
