// MoE dispatch from plain ATen ops: the sorted path (CPU), the per-token reference loop every path
// is tested against, and the capacity rule.
//
// Dimensions: N tokens, D model dim, E experts, A = k active experts per token, F expert hidden,
// M = N * A (token, slot) pairs, K kept pairs (M minus those dropped by the capacity).
#include "kernels/moe/moe_cpu.h"

#include <ATen/ATen.h>

#include <tuple>
#include <vector>

namespace mds::kernels {
namespace {

// Spelled as an optional: a plain `true` would bind to the sort(self, dim, descending) overload.
const c10::optional<bool> kStable = true;

// FFN_e(x) = W2_e gelu(W1_e x + b1_e) + b2_e on rows x_RD, with the exact (erf) GELU.
at::Tensor expert_ffn(const ExpertWeights& w, int64_t e, const at::Tensor& x_RD) {
  at::Tensor h_RF = at::gelu(at::addmm(w.b1_EF[e], x_RD, w.w1_EDF[e]));
  return at::addmm(w.b2_ED[e], h_RF, w.w2_EFD[e]);
}

}  // namespace

// Priority order p = a * N + n (every slot-0 choice in token order, then every slot-1 choice, ...).
// An assignment's rank among those to the same expert comes from a stable sort by expert: its index
// in the sorted order minus the start of its expert's run (found by a binary search in the sorted
// ids, not by bincount, which syncs on CUDA). Kept iff rank < capacity. No host sync.
at::Tensor capacity_keep_mask(const at::Tensor& expert_NA, int64_t num_experts, int64_t capacity) {
  detail::check_expert_ids("capacity_keep_mask", expert_NA, num_experts);
  return detail::capacity_keep_mask_unchecked(expert_NA, num_experts, capacity);
}

namespace detail {

at::ScalarType sort_key_dtype(int64_t num_experts) {
  return num_experts < 255 ? at::kByte : at::kLong;
}

at::Tensor capacity_keep_mask_unchecked(const at::Tensor& expert_NA, int64_t num_experts,
                                        int64_t capacity) {
  if (capacity < 0) return at::ones(expert_NA.sizes(), expert_NA.options().dtype(at::kBool));
  const int64_t N = expert_NA.size(0), A = expert_NA.size(1), M = N * A;
  at::Tensor e_P = expert_NA.t().reshape({M}).to(sort_key_dtype(num_experts));
  at::Tensor sorted_e_P, order_P;
  std::tie(sorted_e_P, order_P) = at::sort(e_P, kStable, /*dim=*/0);
  at::Tensor start_P = at::searchsorted(sorted_e_P, sorted_e_P, /*out_int32=*/false, /*right=*/false);
  at::Tensor rank_sorted_P = at::arange(M, order_P.options()) - start_P;
  at::Tensor rank_P = at::empty_like(rank_sorted_P).scatter_(0, order_P, rank_sorted_P);
  return (rank_P < capacity).view({A, N}).t().contiguous();
}

// docs/math.md eq. M4. Pairs are flattened row-major (pair m = n * A + a). Dropped pairs get the
// key E, so one stable sort puts the kept pairs first, grouped by expert, each group in pair order.
at::Tensor moe_ffn_sorted(const at::Tensor& x_ND, const ExpertWeights& experts,
                          const at::Tensor& expert_NA, const at::Tensor& weight_NA,
                          int64_t capacity, MoeDispatchStats* stats) {
  const int64_t N = x_ND.size(0), A = expert_NA.size(1), E = experts.w1_EDF.size(0), M = N * A;
  at::Tensor e_M = expert_NA.reshape({M});
  at::Tensor key_M = e_M;
  if (capacity >= 0) {
    at::Tensor keep_M = capacity_keep_mask_unchecked(expert_NA, E, capacity).reshape({M});
    key_M = at::where(keep_M, e_M, at::full({}, E, e_M.options()));
  }
  at::Tensor order_M = std::get<1>(at::sort(key_M, kStable, /*dim=*/0));

  // Slice boundaries are needed on the host to narrow() per expert: one small copy of E + 1 counts.
  at::Tensor count_cpu = at::bincount(key_M, {}, E + 1).cpu();
  const int64_t* count = count_cpu.data_ptr<int64_t>();
  const int64_t kept = M - count[E];
  if (stats != nullptr) {
    const auto on_x = at::TensorOptions().dtype(at::kLong).device(x_ND.device());
    stats->tokens_per_expert_E = count_cpu.narrow(0, 0, E).to(on_x, /*non_blocking=*/false,
                                                                /*copy=*/true);
    stats->dropped = count_cpu.select(0, E).to(on_x, /*non_blocking=*/false, /*copy=*/true);
  }

  at::Tensor pair_K = order_M.narrow(0, 0, kept);
  at::Tensor token_M = at::arange(N, e_M.options()).unsqueeze(1).expand({N, A}).reshape({M});
  at::Tensor token_K = token_M.index_select(0, pair_K);
  at::Tensor weight_K = weight_NA.to(x_ND.scalar_type()).reshape({M}).index_select(0, pair_K);
  at::Tensor x_KD = x_ND.index_select(0, token_K);

  // One matrix product per expert over its contiguous slice; empty experts are skipped entirely, so
  // their weights take no part in the graph (their gradient is zero).
  std::vector<at::Tensor> y_parts;
  int64_t offset = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (count[e] == 0) continue;
    y_parts.push_back(expert_ffn(experts, e, x_KD.narrow(0, offset, count[e])));
    offset += count[e];
  }
  // With nothing kept, x_KD (0 rows) stands in so that the result is still a function of x.
  at::Tensor y_KD = y_parts.empty() ? x_KD : at::cat(y_parts, 0);
  y_KD = y_KD * weight_K.unsqueeze(1);
  return at::zeros_like(x_ND).index_add(0, token_K, y_KD);
}

}  // namespace detail

// The specification: for each token, for each of its slots that survives the capacity, add
// weight * FFN_e(x_n). The capacity is applied by counting by hand in the priority order,
// independently of capacity_keep_mask.
at::Tensor moe_ffn_reference(const at::Tensor& x_ND, const ExpertWeights& experts,
                             const at::Tensor& expert_NA, const at::Tensor& weight_NA,
                             int64_t capacity, MoeDispatchStats* stats) {
  detail::check_moe_inputs("moe_ffn_reference", x_ND, experts, expert_NA, weight_NA);
  const int64_t N = x_ND.size(0), D = x_ND.size(1), A = expert_NA.size(1),
                E = experts.w1_EDF.size(0);
  at::Tensor e_cpu = expert_NA.cpu().contiguous();
  auto ids = e_cpu.accessor<int64_t, 2>();

  std::vector<std::vector<bool>> keep(static_cast<size_t>(N),
                                      std::vector<bool>(static_cast<size_t>(A), true));
  std::vector<int64_t> received(static_cast<size_t>(E), 0);
  int64_t dropped = 0;
  for (int64_t a = 0; a < A; ++a)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t e = ids[n][a];
      if (capacity >= 0 && received[e] >= capacity) {
        keep[n][a] = false;
        ++dropped;
      } else {
        ++received[e];
      }
    }

  at::Tensor w_NA = weight_NA.to(x_ND.scalar_type());
  std::vector<at::Tensor> rows;
  for (int64_t n = 0; n < N; ++n) {
    at::Tensor y_D = at::zeros({D}, x_ND.options());
    for (int64_t a = 0; a < A; ++a) {
      if (!keep[n][a]) continue;
      const int64_t e = ids[n][a];
      at::Tensor h_F = at::gelu(at::matmul(x_ND[n], experts.w1_EDF[e]) + experts.b1_EF[e]);
      y_D = y_D + w_NA[n][a] * (at::matmul(h_F, experts.w2_EFD[e]) + experts.b2_ED[e]);
    }
    rows.push_back(y_D);
  }
  if (stats != nullptr) {
    const auto on_x = at::TensorOptions().dtype(at::kLong).device(x_ND.device());
    stats->tokens_per_expert_E = at::tensor(received, at::TensorOptions().dtype(at::kLong)).to(on_x);
    stats->dropped = at::scalar_tensor(dropped, on_x);
  }
  return N > 0 ? at::stack(rows, 0) : at::zeros_like(x_ND);
}

}  // namespace mds::kernels
