// The CUDA global passes of the split path (CUDA builds only): the fused global-key kernels of
// sliding_attention_cuda.cu and FlashAttention for the global queries, around the window pass of
// sliding_attention_split.cpp, whose ATen code is their CPU reference.
//
// Dimensions: B batch, H heads, L length, K head dim, G global tokens, Lp, Kp as in
// sliding_attention_split_plan.h.
#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/sliding_attention/sliding_attention_cuda.h"
#include "kernels/sliding_attention/sliding_attention_split_plan.h"

namespace mds::kernels::detail {
namespace {

const uint16_t* bf16_ptr(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr()); }
uint16_t* bf16_mut(const at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr()); }

// The kernels' arguments and the small tensors they point into.
struct GlobalKeyInputs {
  at::Tensor kg, vg, gpos, key_ok, dilation;
  GlobalKeyArgs args;
};

GlobalKeyInputs global_key_inputs(const Plan& p, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const Globals& g, const SlidingBand& band) {
  GlobalKeyInputs r;
  const at::Tensor idx_k = index_BHGK(g, p.H, p.K);
  r.kg = k.gather(2, idx_k).to(at::kFloat).contiguous();
  r.vg = v.gather(2, idx_k).to(at::kFloat).contiguous();
  r.gpos = g.index_BG.to(at::kLong).contiguous();
  r.key_ok = g.key_BG.contiguous();
  std::vector<int> dil(band.dilation_H.begin(), band.dilation_H.end());
  r.dilation = small_tensor(dil, at::kInt, q.device());
  GlobalKeyArgs& a = r.args;
  a.B = static_cast<int>(p.B), a.H = static_cast<int>(p.H), a.L = static_cast<int>(p.L);
  a.K = static_cast<int>(p.K), a.G = static_cast<int>(p.G);
  a.W = static_cast<int>(std::min<int64_t>(band.window, p.L));
  a.scale = static_cast<float>(band.scale);
  a.q = bf16_ptr(q), a.kg = r.kg.data_ptr<float>(), a.vg = r.vg.data_ptr<float>();
  a.gpos = r.gpos.data_ptr<int64_t>(), a.key_ok = r.key_ok.data_ptr<bool>(), a.dilation = r.dilation.data_ptr<int>();
  return r;
}

void* current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// [B, H, G, K] -> [B, H, G, Kp] with zero columns (the masking column is only needed on keys and q).
at::Tensor pad_columns(const at::Tensor& x, int64_t Kp) {
  const int64_t K = x.size(3);
  return Kp == K ? x.contiguous() : at::constant_pad_nd(x, {0, Kp - K}).contiguous();
}

// The global queries' rows: FlashAttention over every key of the (extended) sequence.
struct GlobalQueryRows {
  at::Tensor q_BHGKp, out_BHGKp, lse_BHG;
  compat::FlashForward flash;
};

GlobalQueryRows global_query_forward(const Plan& p, const at::Tensor& qx, const at::Tensor& kx, const at::Tensor& vx,
                                     const Globals& g, double scale) {
  GlobalQueryRows r;
  const int64_t BH = p.B * p.H;
  const at::Tensor idx_x = g.index_BG.view({p.B, 1, p.G, 1}).expand({p.B, p.H, p.G, p.Kp});
  r.q_BHGKp = qx.gather(2, idx_x).contiguous();
  r.flash = compat::flash_window_forward(r.q_BHGKp.view({BH, p.G, 1, p.Kp}), kx.view({BH, p.Lp, 1, p.Kp}),
                                         vx.view({BH, p.Lp, 1, p.Kp}), scale, /*window=*/-1);
  r.out_BHGKp = r.flash.out_NLHK.reshape({p.B, p.H, p.G, p.Kp});
  r.lse_BHG = r.flash.lse_NHL.reshape({p.B, p.H, p.G});
  if (p.masked) {  // a row whose keys are all padding saw only masked keys: no key at all (eq. A2)
    const at::Tensor none_BHG = r.lse_BHG < -kPenalty / 2;
    r.lse_BHG = r.lse_BHG.masked_fill(none_BHG, -kInf);
    r.out_BHGKp = r.out_BHGKp.masked_fill(none_BHG.unsqueeze(-1), 0);
  }
  return r;
}

}  // namespace

bool global_kernels_apply(const Plan& p, const at::Tensor& q) {
  return q.is_cuda() && q.scalar_type() == at::kBFloat16 && (p.K == 32 || p.K == 64 || p.K == 128 || p.K == 256);
}

Forward global_forward_cuda(const Plan& p, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& qx, const at::Tensor& kx, const at::Tensor& vx, const at::Tensor& out_w,
                            const at::Tensor& lse_w, const Globals& g, const SlidingBand& band,
                            std::vector<compat::FlashForward>* flash) {
  GlobalKeyInputs in = global_key_inputs(p, q, k, v, g, band);
  at::Tensor out = at::empty_like(q);
  at::Tensor lse = at::empty({p.B, p.H, p.L}, q.options().dtype(at::kFloat));
  const at::Tensor ow = out_w.contiguous(), lw = lse_w.to(at::kFloat).contiguous();
  global_key_forward_cuda(in.args, bf16_ptr(ow), p.Lp * p.Kp, p.Kp, lw.data_ptr<float>(), p.Lp,
                          p.masked ? static_cast<float>(-kPenalty / 2) : -std::numeric_limits<float>::infinity(),
                          bf16_mut(out), lse.data_ptr<float>(), current_stream());

  GlobalQueryRows rows = global_query_forward(p, qx, kx, vx, g, band.scale);
  if (flash != nullptr) flash->push_back(rows.flash);
  const at::Tensor idx_k = index_BHGK(g, p.H, p.K), idx_g = idx_k.select(3, 0);
  const at::Tensor real_BHG = g.query_BG.view({p.B, 1, p.G}).expand({p.B, p.H, p.G});
  out.scatter_(2, idx_k, at::where(real_BHG.unsqueeze(-1), rows.out_BHGKp.narrow(3, 0, p.K), out.gather(2, idx_k)));
  lse.scatter_(2, idx_g, at::where(real_BHG, rows.lse_BHG, lse.gather(2, idx_g)));
  return {out, lse};
}

std::vector<at::Tensor> global_backward_cuda(const Plan& p, const at::Tensor& dout, const at::Tensor& q,
                                             const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                                             const at::Tensor& lse, const at::Tensor& global_mask_BL,
                                             const at::Tensor& qx, const at::Tensor& kx, const at::Tensor& vx,
                                             const at::Tensor& dq_x, const at::Tensor& dk_x, const at::Tensor& dv_x,
                                             const Globals& g, const SlidingBand& band,
                                             const compat::FlashForward& flash_rows) {
  GlobalKeyInputs in = global_key_inputs(p, q, k, v, g, band);
  const at::Tensor dqw = dq_x.contiguous();
  at::Tensor dq = at::empty_like(q);
  const auto bf16 = q.options();
  at::Tensor p_BHLG = at::empty({p.B, p.H, p.L, p.G}, bf16), ds_BHLG = at::empty({p.B, p.H, p.L, p.G}, bf16);
  const at::Tensor lse_c = lse.contiguous(), gm = global_mask_BL.contiguous();
  global_key_backward_cuda(in.args, bf16_ptr(dout), bf16_ptr(out), lse_c.data_ptr<float>(), gm.data_ptr<bool>(),
                           bf16_ptr(dqw), p.Lp * p.Kp, p.Kp, bf16_mut(dq), bf16_mut(p_BHLG), bf16_mut(ds_BHLG),
                           current_stream());
  const at::Tensor idx_k = index_BHGK(g, p.H, p.K), idx_g = idx_k.select(3, 0);
  at::Tensor dk = dk_x.narrow(2, 0, p.L).narrow(3, 0, p.K).contiguous();
  at::Tensor dv = dv_x.narrow(2, 0, p.L).narrow(3, 0, p.K).contiguous();
  // dk_g = (scale dS)^T q and dv_g = P^T dO: two GEMMs reduce over L (ds already carries the scale).
  dk.scatter_add_(2, idx_k, at::matmul(ds_BHLG.transpose(-2, -1), q));
  dv.scatter_add_(2, idx_k, at::matmul(p_BHLG.transpose(-2, -1), dout));

  // Global query rows: FlashAttention's backward over every key with their own out and lse.
  const int64_t BH = p.B * p.H;
  const at::Tensor real_BHG1 = g.query_BG.view({p.B, 1, p.G, 1});
  const at::Tensor do_q = pad_columns(dout.gather(2, idx_k).masked_fill(real_BHG1.logical_not(), 0), p.Kp);
  const at::Tensor out_q = pad_columns(out.gather(2, idx_k), p.Kp);
  const at::Tensor lse_q = lse.gather(2, idx_g);
  const at::Tensor lse_qx = lse_q.masked_fill(at::isinf(lse_q), kInf).contiguous().view({BH, 1, p.G});
  const at::Tensor idx_x = g.index_BG.view({p.B, 1, p.G, 1}).expand({p.B, p.H, p.G, p.Kp});
  const at::Tensor qg = qx.gather(2, idx_x).contiguous();
  auto grads = compat::flash_window_backward(do_q.view({BH, p.G, 1, p.Kp}), qg.view({BH, p.G, 1, p.Kp}),
                                             kx.view({BH, p.Lp, 1, p.Kp}), vx.view({BH, p.Lp, 1, p.Kp}),
                                             out_q.view({BH, p.G, 1, p.Kp}), lse_qx, flash_rows, band.scale, -1);
  auto crop = [&](const at::Tensor& t, int64_t rows) {
    return t.reshape({p.B, p.H, rows, p.Kp}).narrow(2, 0, std::min(rows, p.L)).narrow(3, 0, p.K);
  };
  dk.add_(crop(std::get<1>(grads), p.Lp));
  dv.add_(crop(std::get<2>(grads), p.Lp));
  dq.scatter_add_(2, idx_k, crop(std::get<0>(grads), p.G));
  return {dq, dk, dv};
}

}  // namespace mds::kernels::detail
