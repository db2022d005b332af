// Grouped-GEMM MoE dispatch (the CUDA path; tested on the CPU through group_gemm's loop).
//
// Dimensions: N tokens, D model dim, E experts, A = k experts per token, F expert hidden,
// M = N * A (token, slot) pairs, W = the row width of x with its bias column (D + 1 rounded up to
// 16 bytes). Pair m = n * A + a.
//
// Sorted rows: the kept pairs grouped by expert (each group in pair order), then the dropped pairs.
// A dropped row is an all-zero input that joins the last expert's group, so every row belongs to a
// group and no GEMM output row is left unspecified (at::_grouped_mm leaves rows past the last offset
// unwritten, in the forward and in the input gradient alike). A zero row stays exactly zero through
// W1 (its bias column is zero too), GELU (gelu(0) = 0) and W2, and adds exactly zero to the weight
// gradients; its router weight is zeroed, so it adds nothing to y and gets no gradient. That spends
// the dropped rows' FLOPs in exchange for no masking passes; the dropless case has no such rows.
//
// Biases: b1 is one more row of W1, met by a column of ones appended to x, so it costs no [M, F]
// pass and its gradient comes out of the grouped GEMM's weight gradient. b2 is added once per token:
// sum_a w_na b2[e_na] = (W_NE b2)[n] with W_NE the router weights spread over the experts.
//
// No index_add (atomics, and a slow kernel): each backward that would scatter rows is written as a
// gather through the inverse permutation, in the small autograd functions below.
#include "kernels/moe/moe_grouped.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "core/cast_cache.h"
#include "core/error.h"
#include "core/torch_compat.h"
#include "kernels/moe/moe_cpu.h"

namespace mds::kernels::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Spelled as an optional: a plain `true` would bind to the sort(self, dim, descending) overload.
const c10::optional<bool> kStable = true;

// D, one column of ones, then zeros up to a multiple of 16 bytes (the grouped GEMM's row alignment).
int64_t augmented_width(int64_t D, at::ScalarType dtype) {
  const int64_t align = std::max<int64_t>(1, 16 / static_cast<int64_t>(c10::elementSize(dtype)));
  return (D / align + 1) * align;
}

at::ScalarType accumulate_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

// The pairs sorted by expert, as index tensors on the device.
struct SortedPairs {
  at::Tensor order_M;     // int64: sorted row r holds pair order_M[r]
  at::Tensor pos_NA;      // int64: the sorted row of pair (n, a) (the inverse of order_M)
  at::Tensor token_M;     // int64: the token of sorted row r
  at::Tensor dispatch_M;  // token_M, with N (a zero row) for the dropped pairs
  at::Tensor offs_E;      // int32: cumulative group ends; the last is M (dropped rows join it)
  at::Tensor keep_NA;     // bool: the pairs the capacity keeps; undefined when dropless
  at::Tensor count_E1;    // int64 [E + 1]: pairs kept per expert, then the dropped ones
};

SortedPairs sort_pairs(const at::Tensor& expert_NA, int64_t E, int64_t capacity) {
  const int64_t N = expert_NA.size(0), A = expert_NA.size(1), M = N * A;
  SortedPairs s;
  at::Tensor key_M = expert_NA.reshape({M}).to(sort_key_dtype(E));
  if (capacity >= 0) {
    s.keep_NA = capacity_keep_mask_unchecked(expert_NA, E, capacity);
    key_M = at::where(s.keep_NA.reshape({M}), key_M, at::full({}, E, key_M.options()));
  }
  at::Tensor sorted_key_M;
  std::tie(sorted_key_M, s.order_M) = at::sort(key_M, kStable, /*dim=*/0);
  // ends[k] = number of pairs with key <= k (ends[E] = M): group boundaries without bincount, which
  // syncs on CUDA.
  at::Tensor ends_E1 = at::searchsorted(sorted_key_M, at::arange(E + 1, key_M.options()),
                                        /*out_int32=*/false, /*right=*/true);
  s.count_E1 = at::diff(ends_E1, 1, 0, at::zeros({1}, ends_E1.options()));
  s.offs_E = at::cat({ends_E1.narrow(0, 0, E - 1), ends_E1.narrow(0, E, 1)}).to(at::kInt);
  s.pos_NA = at::empty_like(s.order_M)
                 .scatter_(0, s.order_M, at::arange(M, s.order_M.options()))
                 .view({N, A});
  s.token_M = A == 1 ? s.order_M : at::div(s.order_M, A, "floor");
  s.dispatch_M = capacity < 0 ? s.token_M
                              : at::where(sorted_key_M == E, at::full({}, N, s.token_M.options()),
                                          s.token_M);
  return s;
}

// x_MW[r] = [x[dispatch[r]], 1, 0, ...] in `dtype` (x cast once, before the gather), all zeros where
// dispatch[r] == N. Backward: each token's gradient is the sum of its A rows, gathered through pos.
// A dropped pair's row carries a zero gradient (its router weight is zero), so summing it is exact.
struct DispatchRows : public torch::autograd::Function<DispatchRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_ND, const at::Tensor& dispatch_M,
                            const at::Tensor& pos_NA, at::ScalarType dtype, int64_t width) {
    const int64_t N = x_ND.size(0), D = x_ND.size(1);
    at::Tensor table = at::empty({N + 1, width}, x_ND.options().dtype(dtype));
    table.narrow(0, 0, N).narrow(1, 0, D).copy_(x_ND);
    table.narrow(1, D, width - D).zero_();
    table.narrow(0, N, 1).zero_();
    table.narrow(0, 0, N).select(1, D).fill_(1);
    ctx->save_for_backward({pos_NA});
    ctx->saved_data["D"] = D;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x_ND.scalar_type());
    return table.index_select(0, dispatch_M);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor pos_NA = ctx->get_saved_variables()[0];
    const int64_t N = pos_NA.size(0), A = pos_NA.size(1), D = ctx->saved_data["D"].toInt();
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const at::Tensor& g_MW = grads[0];
    at::Tensor g_NAW = g_MW.index_select(0, pos_NA.reshape({N * A})).view({N, A, g_MW.size(1)});
    at::Tensor g_ND = at::sum(g_NAW.narrow(2, 0, D), {1}, /*keepdim=*/false, x_dtype);
    return {g_ND, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// [w; b; 0 ...]: w [E, D, F] and b [E, F] -> [E, W, F] in `dtype` (b's row meets x's column of ones).
// Backward: the slices, cast back to the masters' dtypes.
struct StackBias : public torch::autograd::Function<StackBias> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& w_EDF, const at::Tensor& b_EF,
                            at::ScalarType dtype, int64_t width) {
    const int64_t E = w_EDF.size(0), D = w_EDF.size(1), F = w_EDF.size(2);
    at::Tensor stacked = at::empty({E, width, F}, w_EDF.options().dtype(dtype));
    stacked.narrow(1, 0, D).copy_(w_EDF);
    stacked.select(1, D).copy_(b_EF);
    if (width > D + 1) stacked.narrow(1, D + 1, width - D - 1).zero_();
    ctx->saved_data["D"] = D;
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w_EDF.scalar_type());
    ctx->saved_data["b_dtype"] = static_cast<int64_t>(b_EF.scalar_type());
    return stacked;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const int64_t D = ctx->saved_data["D"].toInt();
    const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    const auto b_dtype = static_cast<at::ScalarType>(ctx->saved_data["b_dtype"].toInt());
    const at::Tensor& g = grads[0];
    return {g.narrow(1, 0, D).to(w_dtype), g.select(1, D).to(b_dtype), at::Tensor(), at::Tensor()};
  }
};

// y_ND[n] = sum_a w[n, a] (y_MD[pos[n, a]] + b2[e[n, a]]) in y_MD's dtype, the b2 term as W_NE @ b2.
// Backward, all gathers: grad y_MD[r] = w[pair r] g[token r]; grad w[n, a] = <g[n], y_MD[pos[n, a]]
// + b2[e[n, a]]>, computed per sorted row and gathered back through pos.
struct Combine : public torch::autograd::Function<Combine> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y_MD, const at::Tensor& w_NA,
                            const at::Tensor& b2_ED, const at::Tensor& pos_NA,
                            const at::Tensor& order_M, const at::Tensor& token_M,
                            const at::Tensor& expert_NA) {
    const int64_t N = w_NA.size(0), A = w_NA.size(1), D = y_MD.size(1), E = b2_ED.size(0);
    const at::ScalarType dtype = y_MD.scalar_type();
    at::Tensor wc_NA = w_NA.to(dtype);
    at::Tensor b2c_ED = b2_ED.to(dtype);
    at::Tensor y_NAD = y_MD.index_select(0, pos_NA.reshape({N * A})).view({N, A, D});
    at::Tensor out_ND = (y_NAD * wc_NA.unsqueeze(2)).sum(1);
    at::Tensor w_NE = at::zeros({N, E}, y_MD.options()).scatter_add_(1, expert_NA, wc_NA);
    out_ND = at::addmm(out_ND, w_NE, b2c_ED);
    ctx->save_for_backward({y_MD, wc_NA, b2c_ED, w_NE, pos_NA, order_M, token_M, expert_NA});
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w_NA.scalar_type());
    ctx->saved_data["b_dtype"] = static_cast<int64_t>(b2_ED.scalar_type());
    return out_ND;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &y_MD = saved[0], &wc_NA = saved[1], &b2c_ED = saved[2], &w_NE = saved[3],
                     &pos_NA = saved[4], &order_M = saved[5], &token_M = saved[6],
                     &expert_NA = saved[7];
    const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    const auto b_dtype = static_cast<at::ScalarType>(ctx->saved_data["b_dtype"].toInt());
    const int64_t N = wc_NA.size(0), A = wc_NA.size(1), M = N * A;
    const at::Tensor g_ND = grads[0].to(y_MD.scalar_type());
    const at::ScalarType acc = accumulate_dtype(y_MD.scalar_type());

    at::Tensor g_MD = g_ND.index_select(0, token_M);
    at::Tensor w_M = wc_NA.reshape({M}).index_select(0, order_M);
    at::Tensor grad_y_MD = g_MD * w_M.unsqueeze(1);
    at::Tensor grad_w_M = at::sum(g_MD * y_MD, {1}, /*keepdim=*/false, acc);
    at::Tensor grad_w_NA = grad_w_M.index_select(0, pos_NA.reshape({M})).view({N, A}) +
                           at::mm(g_ND, b2c_ED.t()).gather(1, expert_NA).to(acc);
    at::Tensor grad_b2_ED = at::mm(w_NE.t(), g_ND);
    return {grad_y_MD,          grad_w_NA.to(w_dtype), grad_b2_ED.to(b_dtype), at::Tensor(),
            at::Tensor(),       at::Tensor(),          at::Tensor()};
  }
};

}  // namespace

bool group_gemm_is_grouped(const at::Tensor& a_MK, const at::Tensor& b_GKN) {
  if (!compat::kHasGroupedMm || !a_MK.is_cuda() || a_MK.dim() != 2 || b_GKN.dim() != 3) return false;
  // bfloat16 only: LibTorch 2.11 runs float32 through a loop of its own that copies the offsets to
  // the host (a sync, seen on an H100), which is what our loop does too.
  if (a_MK.scalar_type() != at::kBFloat16 || b_GKN.scalar_type() != at::kBFloat16) return false;
  const int64_t bytes = static_cast<int64_t>(a_MK.element_size());
  auto aligned = [bytes](int64_t stride) { return stride * bytes % 16 == 0; };
  auto aligned_ptr = [](const at::Tensor& t) {
    return reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 == 0;
  };
  return a_MK.size(0) > 0 && a_MK.stride(1) == 1 && aligned(a_MK.stride(0)) &&
         b_GKN.stride(2) == 1 && aligned(b_GKN.stride(1)) && aligned(b_GKN.stride(0)) &&
         aligned_ptr(a_MK) && aligned_ptr(b_GKN);
}

at::Tensor group_gemm(const at::Tensor& a_MK, const at::Tensor& b_GKN, const at::Tensor& offs_G) {
  if (group_gemm_is_grouped(a_MK, b_GKN)) return compat::grouped_mm(a_MK, b_GKN, offs_G);
  // The same products one group at a time; narrow() needs the offsets on the host (one sync).
  const int64_t M = a_MK.size(0), G = b_GKN.size(0), Nout = b_GKN.size(2);
  const at::Tensor ends = offs_G.to(at::kCPU, at::kLong).contiguous();
  const int64_t* end = ends.data_ptr<int64_t>();
  std::vector<at::Tensor> parts;
  int64_t start = 0;
  for (int64_t g = 0; g < G; ++g) {
    MDS_CHECK(end[g] >= start && end[g] <= M, "group_gemm: offsets must be non-decreasing and <= ",
              M, ", got ", ends);
    if (end[g] > start) parts.push_back(at::mm(a_MK.narrow(0, start, end[g] - start), b_GKN[g]));
    start = end[g];
  }
  // Rows past the last offset are unspecified: NaN here, so that the CPU tests catch any use of them.
  if (start < M)
    parts.push_back(at::full({M - start, Nout}, std::numeric_limits<double>::quiet_NaN(),
                             a_MK.options()));
  if (parts.empty()) return at::zeros({0, Nout}, a_MK.options());
  return parts.size() == 1 ? parts[0] : at::cat(parts, 0);
}

at::ScalarType expert_compute_dtype(const at::Tensor& x_ND) {
  const c10::DeviceType device = x_ND.device().type();
  return x_ND.scalar_type() == at::kFloat && compat::autocast_enabled(device)
             ? compat::autocast_dtype(device)
             : x_ND.scalar_type();
}

bool grouped_kernel_applies(const at::Tensor& x_ND) {
  return compat::kHasGroupedMm && x_ND.is_cuda() && expert_compute_dtype(x_ND) == at::kBFloat16;
}

at::Tensor moe_ffn_grouped(const at::Tensor& x_ND, const ExpertWeights& experts,
                           const at::Tensor& expert_NA, const at::Tensor& weight_NA,
                           int64_t capacity, MoeDispatchStats* stats) {
  const int64_t N = x_ND.size(0), D = x_ND.size(1), A = expert_NA.size(1);
  const int64_t E = experts.w1_EDF.size(0);
  const at::ScalarType dtype = expert_compute_dtype(x_ND);
  // Autocast does not cover the grouped GEMM, so every cast here is explicit; keep it from casting
  // anything a second time inside.
  compat::NoAutocast no_autocast(x_ND);
  const auto on_x_long = x_ND.options().dtype(at::kLong);
  if (N * A == 0) {
    if (stats != nullptr) {
      stats->tokens_per_expert_E = at::zeros({E}, on_x_long);
      stats->dropped = at::zeros({}, on_x_long);
    }
    return at::zeros({N, D}, x_ND.options().dtype(dtype));
  }

  const SortedPairs s = sort_pairs(expert_NA, E, capacity);
  const int64_t width = augmented_width(D, dtype);
  at::Tensor x_MW = DispatchRows::apply(x_ND, s.dispatch_M, s.pos_NA, dtype, width);
  // In generation (a CastCacheScope, grad mode off) the expert weights are stacked and cast once per run.
  at::Tensor w1_EWF = core::cached_derived("moe_w1_b1", {experts.w1_EDF, experts.b1_EF}, dtype, [&] {
    return StackBias::apply(experts.w1_EDF, experts.b1_EF, dtype, width);
  });
  at::Tensor h_MF = at::gelu(group_gemm(x_MW, w1_EWF, s.offs_E));
  at::Tensor y_MD = group_gemm(h_MF, core::cast_weight(experts.w2_EFD, dtype), s.offs_E);
  at::Tensor w_NA = s.keep_NA.defined()
                        ? at::where(s.keep_NA, weight_NA, at::zeros({}, weight_NA.options()))
                        : weight_NA;
  at::Tensor y_ND =
      Combine::apply(y_MD, w_NA, experts.b2_ED, s.pos_NA, s.order_M, s.token_M, expert_NA);
  if (stats != nullptr) {
    stats->tokens_per_expert_E = s.count_E1.narrow(0, 0, E);
    stats->dropped = s.count_E1.select(0, E);
  }
  return y_ND;
}

}  // namespace mds::kernels::detail
