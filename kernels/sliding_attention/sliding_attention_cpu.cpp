// CPU reference and fallback of sliding_attention: plain loops, float32 and float64.
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window, G global tokens,
// C the columns (keys) one query row sees: C <= 2W + 1 + G, or C <= L for a global query.
//
// What it is: the specification the fast paths are tested against, written as one loop over the
// query rows of each (batch, head) pair (docs/math.md, eq. A1-A3). What it is not: fast. It never
// builds an L x L matrix: a row's scores live in a scratch vector of C entries, and backward
// recomputes them from the saved log-sum-exp (flash-attention style). Time and memory are
// O(L * (2W + 1 + G)) per head; the G global rows add O(G * L).
//
// All arithmetic (scores, softmax, outputs, gradient sums) is in double, whatever the input dtype.
#include "kernels/sliding_attention/sliding_attention_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mds::kernels::detail {
namespace {

using acc_t = double;

constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();

template <typename scalar_t>
acc_t dot(const scalar_t* a, const scalar_t* b, int64_t K) {
  acc_t sum = 0;
  for (int64_t c = 0; c < K; ++c) sum += static_cast<acc_t>(a[c]) * static_cast<acc_t>(b[c]);
  return sum;
}

// ---------------------------------------------------------------------------- columns of a row

// What one (batch, head) pair needs to list a row's keys.
struct RowKeys {
  int64_t L = 0, W = 0, d = 1;
  const bool* key_mask_L = nullptr;     // false = padding key
  const bool* global_mask_L = nullptr;  // true = global token
  std::vector<int64_t> globals;         // non-padding global keys, ascending
  std::vector<int64_t> visible;         // every non-padding key: a global query's columns
};

RowKeys row_keys(int64_t L, int64_t W, int64_t d, const bool* key_mask_L,
                 const bool* global_mask_L) {
  RowKeys keys{L, W, d, key_mask_L, global_mask_L, {}, {}};
  for (int64_t j = 0; j < L; ++j) {
    if (!key_mask_L[j]) continue;
    keys.visible.push_back(j);
    if (global_mask_L[j]) keys.globals.push_back(j);
  }
  return keys;
}

// The keys query i sees, each once (docs/math.md eq. A1). A global query sees every non-padding
// key. Any other query sees its band {i + d*j : j in [-W, W]} inside [0, L), minus padding keys and
// minus global keys; the globals follow as their own columns, so one inside the band counts once.
void row_columns(int64_t i, const RowKeys& keys, std::vector<int64_t>& cols) {
  cols.clear();
  if (keys.global_mask_L[i]) {
    cols = keys.visible;
    return;
  }
  // Clamp j to the band's part inside the sequence, so a huge W costs O(L), not O(W).
  const int64_t j_lo = std::max(-keys.W, -(i / keys.d));
  const int64_t j_hi = std::min(keys.W, (keys.L - 1 - i) / keys.d);
  for (int64_t j = j_lo; j <= j_hi; ++j) {
    const int64_t key = i + keys.d * j;
    if (keys.key_mask_L[key] && !keys.global_mask_L[key]) cols.push_back(key);
  }
  cols.insert(cols.end(), keys.globals.begin(), keys.globals.end());
}

// ---------------------------------------------------------------------------- forward

// One (batch, head) pair: out_i = sum_c softmax_c(scale * q_i . k_c) v_c over the row's columns c,
// lse_i = log sum_c exp(scale * q_i . k_c) (docs/math.md eq. A2).
template <typename scalar_t>
void forward_pair(const scalar_t* q_LK, const scalar_t* k_LK, const scalar_t* v_LK,
                  const RowKeys& keys, int64_t K, acc_t scale, scalar_t* out_LK, acc_t* lse_L) {
  std::vector<int64_t> cols;
  std::vector<acc_t> score_C;
  std::vector<acc_t> out_K(K);
  for (int64_t i = 0; i < keys.L; ++i) {
    row_columns(i, keys, cols);
    scalar_t* out_i = out_LK + i * K;
    if (cols.empty()) {  // no visible key: zeros, never NaN
      std::fill(out_i, out_i + K, scalar_t(0));
      lse_L[i] = kNegInf;
      continue;
    }
    const scalar_t* q_i = q_LK + i * K;
    const int64_t C = static_cast<int64_t>(cols.size());
    score_C.resize(C);
    acc_t max_score = kNegInf;
    for (int64_t c = 0; c < C; ++c) {
      score_C[c] = scale * dot(q_i, k_LK + cols[c] * K, K);
      max_score = std::max(max_score, score_C[c]);
    }
    // Softmax relative to the row maximum, so exp never overflows.
    acc_t sum = 0;
    for (int64_t c = 0; c < C; ++c) {
      score_C[c] = std::exp(score_C[c] - max_score);
      sum += score_C[c];
    }
    std::fill(out_K.begin(), out_K.end(), acc_t(0));
    for (int64_t c = 0; c < C; ++c) {
      const acc_t p = score_C[c] / sum;
      const scalar_t* v_c = v_LK + cols[c] * K;
      for (int64_t e = 0; e < K; ++e) out_K[e] += p * static_cast<acc_t>(v_c[e]);
    }
    for (int64_t e = 0; e < K; ++e) out_i[e] = static_cast<scalar_t>(out_K[e]);
    lse_L[i] = max_score + std::log(sum);
  }
}

// ---------------------------------------------------------------------------- backward

// One (batch, head) pair (docs/math.md eq. A3). With s_ic = scale q_i . k_c and
// P_ic = exp(s_ic - lse_i):
//   D_i = dO_i . O_i,  dP_ic = dO_i . v_c,  dS_ic = P_ic (dP_ic - D_i),
//   dq_i = scale sum_c dS_ic k_c,  dk_c += scale dS_ic q_i,  dv_c += P_ic dO_i.
// dk and dv gather from every row that sees key c; they accumulate in this pair's own buffers.
template <typename scalar_t>
void backward_pair(const scalar_t* dout_LK, const scalar_t* q_LK, const scalar_t* k_LK,
                   const scalar_t* v_LK, const scalar_t* out_LK, const acc_t* lse_L,
                   const RowKeys& keys, int64_t K, acc_t scale, scalar_t* dq_LK, scalar_t* dk_LK,
                   scalar_t* dv_LK) {
  const int64_t L = keys.L;
  std::vector<int64_t> cols;
  std::vector<acc_t> dq_K(K);
  std::vector<acc_t> dk_acc_LK(L * K, 0.0), dv_acc_LK(L * K, 0.0);
  for (int64_t i = 0; i < L; ++i) {
    scalar_t* dq_i = dq_LK + i * K;
    if (lse_L[i] == kNegInf) {  // a row that saw no key has no gradient
      std::fill(dq_i, dq_i + K, scalar_t(0));
      continue;
    }
    row_columns(i, keys, cols);
    const scalar_t* q_i = q_LK + i * K;
    const scalar_t* dout_i = dout_LK + i * K;
    const acc_t D_i = dot(dout_i, out_LK + i * K, K);
    std::fill(dq_K.begin(), dq_K.end(), acc_t(0));
    for (const int64_t key : cols) {
      const scalar_t* k_c = k_LK + key * K;
      const scalar_t* v_c = v_LK + key * K;
      const acc_t p = std::exp(scale * dot(q_i, k_c, K) - lse_L[i]);
      const acc_t ds = p * (dot(dout_i, v_c, K) - D_i);
      acc_t* dk_c = dk_acc_LK.data() + key * K;
      acc_t* dv_c = dv_acc_LK.data() + key * K;
      for (int64_t e = 0; e < K; ++e) {
        dq_K[e] += scale * ds * static_cast<acc_t>(k_c[e]);
        dk_c[e] += scale * ds * static_cast<acc_t>(q_i[e]);
        dv_c[e] += p * static_cast<acc_t>(dout_i[e]);
      }
    }
    for (int64_t e = 0; e < K; ++e) dq_i[e] = static_cast<scalar_t>(dq_K[e]);
  }
  for (int64_t n = 0; n < L * K; ++n) {
    dk_LK[n] = static_cast<scalar_t>(dk_acc_LK[n]);
    dv_LK[n] = static_cast<scalar_t>(dv_acc_LK[n]);
  }
}

}  // namespace

// ---------------------------------------------------------------------------- entry points
// One task per (batch, head) pair: backward accumulates dk/dv of its own pair, so no two threads
// ever write the same element.

SlidingForwardCpu sliding_attention_forward_cpu(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK,
                                                const at::Tensor& v_BHLK,
                                                const at::Tensor& key_mask_BL,
                                                const at::Tensor& global_mask_BL,
                                                const SlidingBand& band) {
  const int64_t B = q_BHLK.size(0), H = q_BHLK.size(1), L = q_BHLK.size(2), K = q_BHLK.size(3);
  SlidingForwardCpu result;
  result.out_BHLK = at::empty_like(q_BHLK);
  result.lse_BHL = at::empty({B, H, L}, q_BHLK.options().dtype(at::kDouble));
  const bool* key_mask = key_mask_BL.data_ptr<bool>();
  const bool* global_mask = global_mask_BL.data_ptr<bool>();
  acc_t* lse = result.lse_BHL.data_ptr<acc_t>();
  AT_DISPATCH_FLOATING_TYPES(q_BHLK.scalar_type(), "sliding_attention_forward_cpu", [&] {
    const scalar_t* q = q_BHLK.data_ptr<scalar_t>();
    const scalar_t* k = k_BHLK.data_ptr<scalar_t>();
    const scalar_t* v = v_BHLK.data_ptr<scalar_t>();
    scalar_t* out = result.out_BHLK.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / H, h = bh % H;
        const RowKeys keys =
            row_keys(L, band.window, band.dilation_H[h], key_mask + b * L, global_mask + b * L);
        const int64_t offset = bh * L * K;
        forward_pair(q + offset, k + offset, v + offset, keys, K, band.scale, out + offset,
                     lse + bh * L);
      }
    });
  });
  return result;
}

SlidingGradsCpu sliding_attention_backward_cpu(
    const at::Tensor& dout_BHLK, const at::Tensor& q_BHLK, const at::Tensor& k_BHLK,
    const at::Tensor& v_BHLK, const at::Tensor& out_BHLK, const at::Tensor& lse_BHL,
    const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL, const SlidingBand& band) {
  const int64_t B = q_BHLK.size(0), H = q_BHLK.size(1), L = q_BHLK.size(2), K = q_BHLK.size(3);
  SlidingGradsCpu grads;
  grads.dq_BHLK = at::empty_like(q_BHLK);
  grads.dk_BHLK = at::empty_like(k_BHLK);
  grads.dv_BHLK = at::empty_like(v_BHLK);
  const bool* key_mask = key_mask_BL.data_ptr<bool>();
  const bool* global_mask = global_mask_BL.data_ptr<bool>();
  const acc_t* lse = lse_BHL.data_ptr<acc_t>();
  AT_DISPATCH_FLOATING_TYPES(q_BHLK.scalar_type(), "sliding_attention_backward_cpu", [&] {
    const scalar_t* dout = dout_BHLK.data_ptr<scalar_t>();
    const scalar_t* q = q_BHLK.data_ptr<scalar_t>();
    const scalar_t* k = k_BHLK.data_ptr<scalar_t>();
    const scalar_t* v = v_BHLK.data_ptr<scalar_t>();
    const scalar_t* out = out_BHLK.data_ptr<scalar_t>();
    scalar_t* dq = grads.dq_BHLK.data_ptr<scalar_t>();
    scalar_t* dk = grads.dk_BHLK.data_ptr<scalar_t>();
    scalar_t* dv = grads.dv_BHLK.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / H, h = bh % H;
        const RowKeys keys =
            row_keys(L, band.window, band.dilation_H[h], key_mask + b * L, global_mask + b * L);
        const int64_t offset = bh * L * K;
        backward_pair(dout + offset, q + offset, k + offset, v + offset, out + offset, lse + bh * L,
                      keys, K, band.scale, dq + offset, dk + offset, dv + offset);
      }
    });
  });
  return grads;
}

}  // namespace mds::kernels::detail
