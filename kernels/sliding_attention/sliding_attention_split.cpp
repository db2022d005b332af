// The split path of sliding_attention: window pass + dense global passes merged through the
// log-sum-exp (see sliding_attention_split.h and docs/math.md eq. A5).
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window, G global tokens, d dilation,
// Lp = L rounded up to a multiple of every dilation, Kp = head dim with the masking column, rounded
// up to a multiple of 8 (FlashAttention's granularity), N = B * (heads of one dilation).
#include "kernels/sliding_attention/sliding_attention_split.h"

#include <torch/torch.h>

#include "core/torch_compat.h"
#include "kernels/sliding_attention/sliding_attention_split_plan.h"

#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <vector>

namespace mds::kernels::detail {

at::Tensor index_BHGK(const Globals& g, int64_t H, int64_t K) {
  const int64_t B = g.index_BG.size(0), G = g.index_BG.size(1);
  return g.index_BG.view({B, 1, G, 1}).expand({B, H, G, K});
}

namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// ---------------------------------------------------------------------------- window kernel

// Plain windowed attention on [N, L, H, K] (stride(-1) == 1): out [N, L, H, K], lse [N, H, L].
struct WindowForward {
  at::Tensor out_NLHK, lse_NHL;
  compat::FlashForward flash;  // CUDA only: the RNG state the backward wants back
};

SlidingBand plain_band(int64_t window, int64_t heads, double scale) {
  return SlidingBand{window, std::vector<int64_t>(static_cast<size_t>(heads), 1), scale};
}

WindowForward window_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                             int64_t window) {
  if (q.is_cuda()) {
    compat::FlashForward f = compat::flash_window_forward(q, k, v, scale, window);
    return {f.out_NLHK, f.lse_NHL, f};
  }
  const int64_t N = q.size(0), L = q.size(1), H = q.size(2);
  const at::Tensor keys_NL = at::ones({N, L}, q.options().dtype(at::kBool));
  SlidingForwardCpu r = sliding_attention_forward_cpu(
      q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous(), keys_NL,
      at::zeros_like(keys_NL), plain_band(window, H, scale));
  return {r.out_BHLK.transpose(1, 2), r.lse_BHL, {}};
}

std::vector<at::Tensor> window_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                        const compat::FlashForward& flash, double scale, int64_t window) {
  if (q.is_cuda()) {
    auto g = compat::flash_window_backward(dout, q, k, v, out, lse, flash, scale, window);
    return {std::get<0>(g), std::get<1>(g), std::get<2>(g)};
  }
  const int64_t N = q.size(0), L = q.size(1), H = q.size(2);
  const at::Tensor keys_NL = at::ones({N, L}, q.options().dtype(at::kBool));
  auto bhlk = [](const at::Tensor& t) { return t.transpose(1, 2).contiguous(); };
  SlidingGradsCpu g = sliding_attention_backward_cpu(bhlk(dout), bhlk(q), bhlk(k), bhlk(v), bhlk(out),
                                                     lse.to(at::kDouble).contiguous(), keys_NL,
                                                     at::zeros_like(keys_NL), plain_band(window, H, scale));
  return {g.dq_BHLK.transpose(1, 2), g.dk_BHLK.transpose(1, 2), g.dv_BHLK.transpose(1, 2)};
}

// ---------------------------------------------------------------------------- the plan

Plan make_plan(const at::Tensor& q_BHLK, const SlidingBand& band, bool key_padding, int64_t G) {
  Plan p;
  p.B = q_BHLK.size(0), p.H = q_BHLK.size(1), p.L = q_BHLK.size(2), p.K = q_BHLK.size(3), p.G = G;
  int64_t lcm = 1;
  for (int64_t h = 0; h < p.H; ++h) {
    const int64_t d = band.dilation_H[static_cast<size_t>(h)];
    p.heads_by_dilation[d].push_back(h);
    lcm = std::lcm(lcm, d);
  }
  p.Lp = round_up(p.L, lcm);
  p.masked = key_padding || p.Lp != p.L;
  p.Kp = p.masked ? round_up(p.K + 1, 8) : p.K;
  p.stat = q_BHLK.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return p;
}

// x [B, H, L, K] -> [B, H, Lp, Kp]: zero rows and columns added; column K holds `column` when masked.
at::Tensor extend(const Plan& p, const at::Tensor& x, const at::Tensor& column_BHL) {
  if (!p.masked) return x;
  at::Tensor out = at::zeros({p.B, p.H, p.Lp, p.Kp}, x.options());
  out.narrow(2, 0, p.L).narrow(3, 0, p.K).copy_(x);
  if (column_BHL.defined()) out.select(3, p.K).copy_(column_BHL);
  return out;
}

// The masking column of q (1 on real rows) and of k (0 on visible keys, -kPenalty / scale on padding
// keys and on the rows past L).
at::Tensor q_column(const Plan& p, const at::Tensor& q) {
  at::Tensor c = at::zeros({p.B, 1, p.Lp}, q.options());
  c.narrow(2, 0, p.L).fill_(1);
  return c.expand({p.B, p.H, p.Lp});
}

at::Tensor k_column(const Plan& p, const at::Tensor& k, const at::Tensor& key_mask_BL, double scale) {
  at::Tensor c = at::full({p.B, 1, p.Lp}, -kPenalty / scale, k.options());
  c.narrow(2, 0, p.L).masked_fill_(key_mask_BL.view({p.B, 1, p.L}), 0);
  return c.expand({p.B, p.H, p.Lp});
}

// Runs `fn` on each dilation's heads as [N, Lp/d, d, Kp] (a view when the group is every head).
template <typename Fn>
void for_each_group(const Plan& p, Fn&& fn) {
  for (const auto& [d, heads] : p.heads_by_dilation) fn(d, heads, static_cast<int64_t>(heads.size()) == p.H);
}

at::Tensor select_heads(const at::Tensor& x_BHLK, const at::Tensor& heads, bool all) {
  return all ? x_BHLK : x_BHLK.index_select(1, heads);
}

// [B*n, Lp/d, d, X] from [B, n, Lp, X]: the interleaved sub-sequences as heads.
at::Tensor as_subsequences(const at::Tensor& x, int64_t d) {
  return x.view({x.size(0) * x.size(1), x.size(2) / d, d, x.size(3)});
}

// lse [B*n, d, Lp/d] <-> [B, n, Lp].
at::Tensor lse_to_positions(const at::Tensor& lse, int64_t B, int64_t n, int64_t Lp, int64_t d) {
  return lse.reshape({B, n, d, Lp / d}).permute({0, 1, 3, 2}).reshape({B, n, Lp});
}
at::Tensor lse_to_subsequences(const at::Tensor& lse_BnL, int64_t d) {
  const int64_t B = lse_BnL.size(0), n = lse_BnL.size(1), Lp = lse_BnL.size(2);
  return lse_BnL.view({B, n, Lp / d, d}).permute({0, 1, 3, 2}).reshape({B * n, d, Lp / d});
}

// ---------------------------------------------------------------------------- global slots

Globals find_globals(const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL, int64_t G) {
  Globals g;
  at::Tensor order_BL =
      std::get<1>(global_mask_BL.to(at::kInt).sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  g.index_BG = order_BL.narrow(1, 0, G).contiguous();
  g.query_BG = global_mask_BL.gather(1, g.index_BG);
  g.key_BG = g.query_BG & key_mask_BL.gather(1, g.index_BG);
  return g;
}

// Which (query i, global key slot) pairs the global-key pass counts: a visible global key that is not
// already in i's dilated window (each key counts once, eq. A1). [B, H, L, G].
at::Tensor global_key_visible(const Plan& p, const Globals& g, const SlidingBand& band, const at::Device& dev) {
  const auto lopt = at::TensorOptions().dtype(at::kLong).device(dev);
  at::Tensor rel = g.index_BG.view({p.B, 1, 1, p.G}) - at::arange(p.L, lopt).view({1, 1, p.L, 1});
  at::Tensor d = small_tensor(band.dilation_H, at::kLong, dev).view({1, p.H, 1, 1});
  at::Tensor in_window = rel.abs().le(d * std::min(band.window, p.L)) & at::remainder(rel, d).eq(0);
  return g.key_BG.view({p.B, 1, 1, p.G}) & in_window.logical_not();
}

// exp(s - lse) where visible, else 0 (no NaN from -inf - -inf, no inf from masked entries).
at::Tensor probabilities(const at::Tensor& s, const at::Tensor& lse, const at::Tensor& visible) {
  return at::where(visible, at::exp(s - lse.unsqueeze(-1)), at::zeros({}, s.options()));
}

at::Tensor masked_lse(const at::Tensor& s, const at::Tensor& visible) {
  return at::logsumexp(s.masked_fill(visible.logical_not(), -kInf), {-1});
}

// ---------------------------------------------------------------------------- forward

Forward split_forward(const Plan& p, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const at::Tensor& key_mask_BL, const Globals& g, const SlidingBand& band,
                      std::vector<compat::FlashForward>* flash) {
  const auto dev = q.device();
  const at::Tensor qx = extend(p, q, p.masked ? q_column(p, q) : at::Tensor());
  const at::Tensor kx = extend(p, k, p.masked ? k_column(p, k, key_mask_BL, band.scale) : at::Tensor());
  const at::Tensor vx = extend(p, v, at::Tensor());

  // 1. Window pass, one dilation at a time.
  at::Tensor out_w = p.heads_by_dilation.size() == 1 ? at::Tensor() : at::empty({p.B, p.H, p.Lp, p.Kp}, q.options());
  at::Tensor lse_w = p.heads_by_dilation.size() == 1 ? at::Tensor() : at::empty({p.B, p.H, p.Lp}, q.options().dtype(p.stat));
  for_each_group(p, [&](int64_t d, const std::vector<int64_t>& heads, bool all) {
    const int64_t n = static_cast<int64_t>(heads.size());
    const at::Tensor idx = all ? at::Tensor() : small_tensor(heads, at::kLong, dev);
    WindowForward f = window_forward(as_subsequences(select_heads(qx, idx, all), d),
                                     as_subsequences(select_heads(kx, idx, all), d),
                                     as_subsequences(select_heads(vx, idx, all), d), band.scale, band.window);
    if (flash != nullptr) flash->push_back(f.flash);
    at::Tensor o = f.out_NLHK.reshape({p.B, n, p.Lp, p.Kp});
    at::Tensor l = lse_to_positions(f.lse_NHL.to(p.stat), p.B, n, p.Lp, d);
    if (all) {
      out_w = o, lse_w = l;
    } else {
      out_w.index_copy_(1, idx, o);
      lse_w.index_copy_(1, idx, l);
    }
  });
#ifdef MDS_WITH_CUDA
  if (p.G > 0 && global_kernels_apply(p, q))
    return global_forward_cuda(p, q, k, v, qx, kx, vx, out_w, lse_w, g, band, flash);
#endif
  lse_w = lse_w.narrow(2, 0, p.L);
  if (p.masked) lse_w = lse_w.masked_fill(lse_w < -kPenalty / 2, -kInf);  // saw only masked keys
  if (p.G == 0) return {out_w.narrow(2, 0, p.L).narrow(3, 0, p.K).contiguous(), lse_w.contiguous()};
  const at::Tensor o_w = out_w.narrow(2, 0, p.L).narrow(3, 0, p.K).to(p.stat);

  // 2. Global keys outside each query's window, merged through the LSE.
  const at::Tensor qf = q.to(p.stat), kf = k.to(p.stat), vf = v.to(p.stat);
  const at::Tensor idx_k = index_BHGK(g, p.H, p.K);
  const at::Tensor kg = kf.gather(2, idx_k), vg = vf.gather(2, idx_k);
  const at::Tensor vis_BHLG = global_key_visible(p, g, band, dev);
  const at::Tensor s_BHLG = at::matmul(qf, kg.transpose(-2, -1)) * band.scale;
  const at::Tensor lse_g = masked_lse(s_BHLG, vis_BHLG);
  const at::Tensor o_g = at::matmul(probabilities(s_BHLG, lse_g, vis_BHLG), vg);
  at::Tensor lse = at::logaddexp(lse_w, lse_g);
  const at::Tensor empty = at::isinf(lse);  // only -inf is possible: no key at all
  const at::Tensor zero = at::zeros({}, lse.options());
  const at::Tensor a = at::where(empty, zero, at::exp(lse_w - lse)).unsqueeze(-1);
  const at::Tensor b = at::where(empty, zero, at::exp(lse_g - lse)).unsqueeze(-1);
  at::Tensor out = a * o_w + b * o_g;

  // 3. Global queries see every non-padding key: their rows are replaced.
  const at::Tensor qq = qf.gather(2, idx_k);
  const at::Tensor keys_B11L = key_mask_BL.view({p.B, 1, 1, p.L});
  const at::Tensor s_BHGL = at::matmul(qq, kf.transpose(-2, -1)) * band.scale;
  const at::Tensor lse_q = masked_lse(s_BHGL, keys_B11L);
  const at::Tensor o_q = at::matmul(probabilities(s_BHGL, lse_q, keys_B11L), vf);
  const at::Tensor real_BHG = g.query_BG.view({p.B, 1, p.G}).expand({p.B, p.H, p.G});
  out = out.scatter(2, idx_k, at::where(real_BHG.unsqueeze(-1), o_q, out.gather(2, idx_k)));
  lse = lse.scatter(2, idx_k.select(3, 0), at::where(real_BHG, lse_q, lse.gather(2, idx_k.select(3, 0))));
  return {out.to(q.scalar_type()), lse.contiguous()};
}

// ---------------------------------------------------------------------------- backward

std::vector<at::Tensor> split_backward(const Plan& p, const at::Tensor& dout, const at::Tensor& q,
                                       const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                                       const at::Tensor& lse, const at::Tensor& key_mask_BL,
                                       const at::Tensor& global_mask_BL, const Globals& g, const SlidingBand& band,
                                       const std::vector<compat::FlashForward>& flash) {
  const auto dev = q.device();
  // Global query rows came from the dense pass (3) only: the window and global-key passes get no
  // gradient from them.
  const at::Tensor dout_w = p.G == 0 ? dout : dout.masked_fill(global_mask_BL.view({p.B, 1, p.L, 1}), 0);

  // 1. Window pass: its kernel's backward with the merged output and LSE (rows without any key get
  // lse = +inf, i.e. zero probabilities, instead of -inf).
  const at::Tensor qx = extend(p, q, p.masked ? q_column(p, q) : at::Tensor());
  const at::Tensor kx = extend(p, k, p.masked ? k_column(p, k, key_mask_BL, band.scale) : at::Tensor());
  const at::Tensor vx = extend(p, v, at::Tensor());
  const at::Tensor ox = extend(p, out, at::Tensor());
  const at::Tensor dx = extend(p, dout_w, at::Tensor());
  at::Tensor lse_x = lse.masked_fill(at::isinf(lse), kInf);
  if (p.Lp != p.L) lse_x = at::cat({lse_x, at::full({p.B, p.H, p.Lp - p.L}, kInf, lse.options())}, 2);
  const at::Tensor lse_float = lse_x.to(q.is_cuda() ? at::kFloat : at::kDouble);

  at::Tensor dq_x, dk_x, dv_x;
  if (p.heads_by_dilation.size() > 1) {
    dq_x = at::empty({p.B, p.H, p.Lp, p.Kp}, q.options());
    dk_x = at::empty_like(dq_x), dv_x = at::empty_like(dq_x);
  }
  size_t group = 0;
  for_each_group(p, [&](int64_t d, const std::vector<int64_t>& heads, bool all) {
    const int64_t n = static_cast<int64_t>(heads.size());
    const at::Tensor idx = all ? at::Tensor() : small_tensor(heads, at::kLong, dev);
    auto sub = [&](const at::Tensor& x) { return as_subsequences(select_heads(x, idx, all), d); };
    std::vector<at::Tensor> gr =
        window_backward(sub(dx), sub(qx), sub(kx), sub(vx), sub(ox),
                        lse_to_subsequences(select_heads(lse_float, idx, all), d).contiguous(), flash[group++],
                        band.scale, band.window);
    at::Tensor* dst[3] = {&dq_x, &dk_x, &dv_x};
    for (int c = 0; c < 3; ++c) {
      at::Tensor t = gr[static_cast<size_t>(c)].reshape({p.B, n, p.Lp, p.Kp});
      if (all) *dst[c] = t;
      else dst[c]->index_copy_(1, idx, t.to(dst[c]->scalar_type()));
    }
  });
#ifdef MDS_WITH_CUDA
  if (p.G > 0 && global_kernels_apply(p, q))
    return global_backward_cuda(p, dout, q, k, v, out, lse, global_mask_BL, qx, kx, vx, dq_x, dk_x, dv_x, g, band,
                                flash.back());
#endif
  auto crop = [&](const at::Tensor& t) { return t.narrow(2, 0, p.L).narrow(3, 0, p.K).to(p.stat); };
  at::Tensor dq = crop(dq_x), dk = crop(dk_x), dv = crop(dv_x);
  if (p.G == 0) return {dq.to(q.scalar_type()), dk.to(q.scalar_type()), dv.to(q.scalar_type())};


  // 2. Global keys (A3 with the merged lse): P = exp(S - lse), dS = P (dO.v - D).
  const at::Tensor qf = q.to(p.stat), kf = k.to(p.stat), vf = v.to(p.stat), of = out.to(p.stat);
  const at::Tensor dof = dout_w.to(p.stat);
  const at::Tensor idx_k = index_BHGK(g, p.H, p.K);
  const at::Tensor kg = kf.gather(2, idx_k), vg = vf.gather(2, idx_k);
  const at::Tensor vis_BHLG = global_key_visible(p, g, band, dev);
  const at::Tensor s_BHLG = at::matmul(qf, kg.transpose(-2, -1)) * band.scale;
  const at::Tensor p_BHLG = probabilities(s_BHLG, lse.masked_fill(at::isinf(lse), kInf), vis_BHLG);
  const at::Tensor D_BHL1 = (dof * of).sum(-1, /*keepdim=*/true);
  const at::Tensor ds_BHLG = p_BHLG * (at::matmul(dof, vg.transpose(-2, -1)) - D_BHL1);
  dq = dq + at::matmul(ds_BHLG, kg) * band.scale;
  dk = dk.scatter_add(2, idx_k, at::matmul(ds_BHLG.transpose(-2, -1), qf) * band.scale);
  dv = dv.scatter_add(2, idx_k, at::matmul(p_BHLG.transpose(-2, -1), dof));

  // 3. Global queries against every non-padding key.
  const at::Tensor real_BHG1 = g.query_BG.view({p.B, 1, p.G, 1});
  const at::Tensor do_q = dout.to(p.stat).gather(2, idx_k).masked_fill(real_BHG1.logical_not(), 0);
  const at::Tensor qq = qf.gather(2, idx_k), oq = of.gather(2, idx_k);
  const at::Tensor keys_B11L = key_mask_BL.view({p.B, 1, 1, p.L});
  const at::Tensor lse_q = lse.gather(2, idx_k.select(3, 0));
  const at::Tensor s_BHGL = at::matmul(qq, kf.transpose(-2, -1)) * band.scale;
  const at::Tensor p_BHGL = probabilities(s_BHGL, lse_q.masked_fill(at::isinf(lse_q), kInf), keys_B11L);
  const at::Tensor ds_BHGL =
      p_BHGL * (at::matmul(do_q, vf.transpose(-2, -1)) - (do_q * oq).sum(-1, /*keepdim=*/true));
  dq = dq.scatter_add(2, idx_k, at::matmul(ds_BHGL, kf) * band.scale);
  dk = dk + at::matmul(ds_BHGL.transpose(-2, -1), qq) * band.scale;
  dv = dv + at::matmul(p_BHGL.transpose(-2, -1), do_q);
  return {dq.to(q.scalar_type()), dk.to(q.scalar_type()), dv.to(q.scalar_type())};
}

// ---------------------------------------------------------------------------- autograd

struct SplitArgs {
  SlidingBand band;
  bool key_padding = false;
  int64_t G = 0;
};

class SplitFunction : public torch::autograd::Function<SplitFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL,
                            const SplitArgs& args) {
    // fp32 islands stay fp32 under autocast; the window kernel gets the inputs' dtype.
    compat::NoAutocast no_autocast(q);
    const Plan p = make_plan(q, args.band, args.key_padding, args.G);
    const Globals g = p.G > 0 ? find_globals(key_mask_BL, global_mask_BL, p.G) : Globals{};
    std::vector<compat::FlashForward> flash;
    Forward f = split_forward(p, q, k, v, key_mask_BL, g, args.band, &flash);
    std::vector<at::Tensor> saved = {q, k, v, f.out_BHLK, f.lse_BHL, key_mask_BL, global_mask_BL};
    for (const auto& fl : flash) saved.insert(saved.end(), {fl.rng_state, fl.unused});
    ctx->save_for_backward(saved);
    ctx->saved_data["window"] = args.band.window;
    ctx->saved_data["dilation"] = args.band.dilation_H;
    ctx->saved_data["scale"] = args.band.scale;
    ctx->saved_data["key_padding"] = args.key_padding;
    ctx->saved_data["G"] = args.G;
    return f.out_BHLK;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    compat::NoAutocast no_autocast(grad_outputs[0]);
    const auto s = ctx->get_saved_variables();
    const SlidingBand band{ctx->saved_data["window"].toInt(), ctx->saved_data["dilation"].toIntVector(),
                           ctx->saved_data["scale"].toDouble()};
    const Plan p = make_plan(s[0], band, ctx->saved_data["key_padding"].toBool(), ctx->saved_data["G"].toInt());
    const Globals g = p.G > 0 ? find_globals(s[5], s[6], p.G) : Globals{};
    std::vector<compat::FlashForward> flash;
    for (size_t i = 7; i + 1 < s.size(); i += 2) flash.push_back({at::Tensor(), at::Tensor(), s[i], s[i + 1]});
    if (flash.empty()) flash.resize(p.heads_by_dilation.size());
    const at::Tensor dout = grad_outputs[0].to(s[0].scalar_type()).contiguous();
    std::vector<at::Tensor> grads = split_backward(p, dout, s[0], s[1], s[2], s[3], s[4], s[5], s[6], g, band, flash);
    return {grads[0], grads[1], grads[2], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool split_path_supported(const at::Tensor& q_BHLK) {
  const at::ScalarType t = q_BHLK.scalar_type();
  if (q_BHLK.is_cpu()) return t == at::kFloat || t == at::kDouble;
  if (!q_BHLK.is_cuda() || !MDS_TORCH_HAS_FLASH_WINDOW) return false;
  const int64_t K = q_BHLK.size(3);
  return (t == at::kBFloat16 || t == at::kHalf) && K % 8 == 0 && K + 8 <= 256;
}

at::Tensor sliding_attention_split(const at::Tensor& q_BHLK, const at::Tensor& k_BHLK, const at::Tensor& v_BHLK,
                                   const at::Tensor& key_mask_BL, const at::Tensor& global_mask_BL,
                                   const SlidingBand& band, const SplitHints& hints) {
  SplitArgs args{band, false, 0};
  args.key_padding = hints.key_padding >= 0 ? hints.key_padding > 0 : !key_mask_BL.all().item<bool>();
  args.G = hints.max_globals >= 0 ? hints.max_globals : global_mask_BL.sum(1).max().item<int64_t>();
  return SplitFunction::apply(q_BHLK, k_BHLK, v_BHLK, key_mask_BL, global_mask_BL, args);
}

}  // namespace mds::kernels::detail
