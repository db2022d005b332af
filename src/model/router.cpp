// Softmax top-k router (docs/math.md eq. M1-M3).
//
// Dimensions: N tokens, E experts, A = k experts per token.
#include "model/router.h"

#include "core/error.h"

namespace mds::model {

RouterOutput route(const at::Tensor& logits_NE, int64_t top_k, bool renormalize) {
  MDS_CHECK(logits_NE.defined() && logits_NE.dim() == 2, "route: logits_NE must be [N, E], got ",
            logits_NE.defined() ? logits_NE.sizes() : at::IntArrayRef{});
  MDS_CHECK(at::isFloatingType(logits_NE.scalar_type()), "route: logits_NE must be floating, got ",
            logits_NE.scalar_type());
  const int64_t N = logits_NE.size(0), E = logits_NE.size(1);
  MDS_CHECK(E >= 1, "route: logits_NE must have at least one expert, got ", logits_NE.sizes());
  MDS_CHECK(top_k >= 1 && top_k <= E, "route: top_k must be in [1, E] with E = ", E, ", got ",
            top_k);

  RouterOutput out;
  // fp32 softmax: bf16 logits lose the small differences between experts (algorithms.md 4.1).
  out.logits_NE = logits_NE.to(at::kFloat);
  out.probs_NE = at::softmax(out.logits_NE, -1);  // eq. M1
  at::Tensor top_p_NA;
  std::tie(top_p_NA, out.expert_NA) =
      at::topk(out.probs_NE, top_k, -1, /*largest=*/true, /*sorted=*/true);
  out.weight_NA = renormalize ? top_p_NA / top_p_NA.sum(-1, /*keepdim=*/true) : top_p_NA;

  if (N == 0) {
    out.aux_loss = at::zeros({}, out.logits_NE.options());
    out.z_loss = at::zeros({}, out.logits_NE.options());
    return out;
  }
  // eq. M2, the Switch loss adapted to top-k as in MegaBlocks / DeepSpeed topkgating:
  //   f_e = (# (token, slot) assignments to e) / (N k),  P_e = mean_n p_ne,  aux = E sum_e f_e P_e.
  // f sums to 1, so aux = 1 at uniform routing for every k (also k = E, where f is uniform).
  // f is a count: no gradient; the gradient flows through P.
  // Counted by comparison, not bincount (which syncs on CUDA to size its output).
  at::Tensor f_E = (out.expert_NA.reshape({-1, 1}) == at::arange(E, out.expert_NA.options()))
                       .sum(0)
                       .to(at::kFloat) /
                   static_cast<double>(N * top_k);
  at::Tensor P_E = out.probs_NE.mean(0);
  out.aux_loss = static_cast<double>(E) * (f_E * P_E).sum();
  // eq. M3 (ST-MoE): mean over tokens of logsumexp(logits)^2; keeps the logits small.
  out.z_loss = at::logsumexp(out.logits_NE, {-1}).pow(2).mean();
  return out;
}

}  // namespace mds::model
