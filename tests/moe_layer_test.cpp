// Router (route) and MoeLayer: hand-computed losses, renormalisation, the dense special case,
// gradients, capacity and parameter counts.
//
// Dimensions: N tokens, D model dim, E experts, A = k experts per token, F expert hidden.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/error.h"
#include "model/moe_layer.h"
#include "model/router.h"

namespace mds {

using model::MoeLayer;
using model::MoeLayerOutput;
using model::MoeOptions;
using model::RouterOutput;
using model::route;

namespace {

at::Tensor f32(std::vector<float> values, int64_t rows, int64_t cols) {
  return at::tensor(values, at::TensorOptions().dtype(at::kFloat)).view({rows, cols});
}

at::Tensor i64(std::vector<int64_t> values, int64_t rows, int64_t cols) {
  return at::tensor(values, at::TensorOptions().dtype(at::kLong)).view({rows, cols});
}

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol,
                  const std::string& what = "") {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(at::allclose(a, b, tol, tol)) << what << "\n" << a << "\nvs\n" << b;
}

// Three tokens, three experts. Logits are logs of unnormalised weights so that the softmax is
// exact:
//   token 0: log[5, 2, 1]   -> probs [5/8, 2/8, 1/8]  = [0.625, 0.25, 0.125], logsumexp = ln 8
//   token 1: log[1, 4, 3]   -> probs [1/8, 4/8, 3/8]  = [0.125, 0.5, 0.375], logsumexp = ln 8
//   token 2: log[4, 10, 2]  -> probs [4/16, 10/16, 2/16] = [0.25, 0.625, 0.125], logsumexp = ln 16
// Mean probabilities P = [(0.625 + 0.125 + 0.25), (0.25 + 0.5 + 0.625), (0.125 + 0.375 + 0.125)] /
// 3
//                      = [1, 1.375, 0.625] / 3.
// aux = E sum_e f_e P_e with f_e = assignments to e / (N k):
//   k = 1: experts [0, 1, 1] -> f = [1, 2, 0] / 3 -> aux = 3 (1 * 1 + 2 * 1.375 + 0) / 9 = 3.75 / 3
//   = 1.25 k = 2: experts [0, 1], [1, 2], [1, 0] -> counts [2, 3, 1], f = [2, 3, 1] / 6
//          -> aux = 3 (2 * 1 + 3 * 1.375 + 1 * 0.625) / 18 = 3 * 6.75 / 18 = 1.125
//   k = 3: f = [1, 1, 1] / 3 -> aux = sum_e P_e = 1 (k = E is always perfectly balanced)
// z = mean (logsumexp)^2 = ((ln 8)^2 + (ln 8)^2 + (ln 16)^2) / 3 = (9 + 9 + 16) (ln 2)^2 / 3 = 34/3
// (ln 2)^2.
at::Tensor hand_logits() {
  return f32({std::log(5.f), std::log(2.f), 0.f, 0.f, std::log(4.f), std::log(3.f), std::log(4.f),
              std::log(10.f), std::log(2.f)},
             3, 3);
}

TEST(Route, HandComputedLosses) {
  const double ln2 = std::log(2.0);
  const double z_expected = 34.0 / 3.0 * ln2 * ln2;
  const double aux_expected[] = {1.25, 1.125, 1.0};
  for (int64_t k = 1; k <= 3; ++k) {
    RouterOutput r = route(hand_logits(), k, /*renormalize=*/true);
    expect_close(r.probs_NE,
                 f32({0.625f, 0.25f, 0.125f, 0.125f, 0.5f, 0.375f, 0.25f, 0.625f, 0.125f}, 3, 3),
                 1e-6);
    EXPECT_NEAR(r.aux_loss.item<double>(), aux_expected[k - 1], 1e-6) << "k = " << k;
    EXPECT_NEAR(r.z_loss.item<double>(), z_expected, 1e-5) << "k = " << k;
    EXPECT_EQ(r.aux_loss.dim(), 0);
    EXPECT_EQ(r.z_loss.scalar_type(), at::kFloat);
  }
  // Top-k order is most probable first.
  EXPECT_TRUE(at::equal(route(hand_logits(), 2, true).expert_NA, i64({0, 1, 1, 2, 1, 0}, 3, 2)));
  EXPECT_TRUE(
      at::equal(route(hand_logits(), 3, true).expert_NA, i64({0, 1, 2, 1, 2, 0, 1, 0, 2}, 3, 3)));
  // Shifting a token's logits changes its logsumexp but not the routing: z sees it, aux does not.
  at::Tensor shifted = hand_logits();
  shifted[2] += std::log(0.5f);  // token 2: logsumexp ln 16 -> ln 8
  RouterOutput r = route(shifted, 2, true);
  EXPECT_NEAR(r.z_loss.item<double>(), 9.0 * ln2 * ln2, 1e-5);
  EXPECT_NEAR(r.aux_loss.item<double>(), 1.125, 1e-6);
}

TEST(Route, Renormalize) {
  // k = 2 weights: raw top-2 probabilities, or divided by their sum (0.875 for every token here).
  RouterOutput raw = route(hand_logits(), 2, /*renormalize=*/false);
  expect_close(raw.weight_NA, f32({0.625f, 0.25f, 0.5f, 0.375f, 0.625f, 0.25f}, 3, 2), 1e-6, "raw");
  RouterOutput norm = route(hand_logits(), 2, /*renormalize=*/true);
  expect_close(norm.weight_NA, f32({5 / 7.f, 2 / 7.f, 4 / 7.f, 3 / 7.f, 5 / 7.f, 2 / 7.f}, 3, 2),
               1e-6, "renorm");
  // k = E: renormalised weights are the probabilities themselves, sorted.
  RouterOutput all = route(hand_logits(), 3, true);
  expect_close(all.weight_NA, std::get<0>(all.probs_NE.sort(-1, /*descending=*/true)), 1e-6,
               "k = E");
  expect_close(all.weight_NA.sum(-1), at::ones({3}), 1e-6, "k = E sums");
  // Any input dtype routes in float32.
  RouterOutput d = route(hand_logits().to(at::kDouble), 1, false);
  EXPECT_EQ(d.weight_NA.scalar_type(), at::kFloat);
  EXPECT_EQ(d.logits_NE.scalar_type(), at::kFloat);
  EXPECT_THROW(route(hand_logits(), 4, true), Error);
  EXPECT_THROW(route(hand_logits(), 0, true), Error);
}

// The aux-loss gradient flows through P only (f is a count):
//   d aux / d logit_nj = (E / N) p_nj (f_j - sum_e f_e p_ne).
TEST(Route, AuxGradientThroughMeanProbabilitiesOnly) {
  at::manual_seed(11);
  const int64_t N = 6, E = 4, k = 2;
  at::Tensor logits = at::randn({N, E}).requires_grad_(true);
  RouterOutput r = route(logits, k, true);
  r.aux_loss.backward();
  at::Tensor p = r.probs_NE.detach();
  at::Tensor f = at::bincount(r.expert_NA.reshape({-1}), {}, E).to(at::kFloat) / (N * k);
  at::Tensor expected = (double(E) / N) * p * (f.unsqueeze(0) - (p * f.unsqueeze(0)).sum(-1, true));
  expect_close(logits.grad(), expected, 1e-6, "aux gradient");
}

MoeOptions small_options() {
  MoeOptions o;
  o.dim = 8;
  o.ffn_dim = 12;
  o.experts = 4;
  o.top_k = 2;
  o.init_std = 0.3;  // large enough that routing is not nearly uniform
  return o;
}

TEST(MoeLayer, ForwardShapesAndStats) {
  at::manual_seed(12);
  MoeLayer layer(small_options());
  at::Tensor x = at::randn({10, 8});
  MoeLayerOutput out = layer->forward(x);
  EXPECT_EQ(out.y_ND.sizes(), x.sizes());
  EXPECT_EQ(out.y_ND.scalar_type(), at::kFloat);
  EXPECT_EQ(out.tokens_per_expert_E.sizes(), (at::IntArrayRef{4}));
  EXPECT_EQ(out.tokens_per_expert_E.sum().item<int64_t>(), 20);
  EXPECT_EQ(out.dropped.item<int64_t>(), 0);
  EXPECT_TRUE(std::isfinite(out.aux_loss.item<double>()));
  EXPECT_GT(out.z_loss.item<double>(), 0);
  EXPECT_THROW(layer->forward(at::randn({10, 7})), Error);

  // A float64 layer keeps float64 activations; routing stays float32.
  MoeLayer dlayer(small_options());
  dlayer->to(at::kDouble);
  MoeLayerOutput dout = dlayer->forward(x.to(at::kDouble));
  EXPECT_EQ(dout.y_ND.scalar_type(), at::kDouble);
  EXPECT_EQ(dout.aux_loss.scalar_type(), at::kFloat);
}

TEST(MoeLayer, EvalIsDeterministicAndJitterOnlyInTraining) {
  at::manual_seed(13);
  MoeOptions o = small_options();
  o.jitter = 0.1;
  MoeLayer layer(o);
  at::Tensor x = at::randn({16, 8});
  layer->eval();
  at::Tensor y1 = layer->forward(x).y_ND, y2 = layer->forward(x).y_ND;
  EXPECT_TRUE(at::equal(y1, y2));
  layer->train();
  at::Tensor y3 = layer->forward(x).y_ND;
  EXPECT_FALSE(at::equal(y1, y3));
}

// experts = 1: y = W2 gelu(W1 x + b1) + b2, GELU written out with erf.
TEST(MoeLayer, OneExpertIsADenseFfn) {
  at::manual_seed(14);
  MoeOptions o = small_options();
  o.experts = 1;  // top_k stays 2: ignored for a single expert
  MoeLayer layer(o);
  {
    torch::NoGradGuard no_grad;
    layer->b1_EF.normal_();
    layer->b2_ED.normal_();
  }
  EXPECT_EQ(layer->named_parameters().find("router"), nullptr);
  at::Tensor x = at::randn({5, 8});
  MoeLayerOutput out = layer->forward(x);
  at::Tensor h = at::matmul(x, layer->w1_EDF[0]) + layer->b1_EF[0];
  at::Tensor g = 0.5 * h * (1 + at::erf(h / std::sqrt(2.0)));
  at::Tensor y = at::matmul(g, layer->w2_EFD[0]) + layer->b2_ED[0];
  expect_close(out.y_ND, y, 1e-5, "dense");
  EXPECT_EQ(out.aux_loss.item<double>(), 0);
  EXPECT_EQ(out.z_loss.item<double>(), 0);
  EXPECT_EQ(out.tokens_per_expert_E.item<int64_t>(), 5);
  EXPECT_EQ(out.dropped.item<int64_t>(), 0);
}

// The router weight gets a gradient from the output (through weight_NA), from aux and from z on
// their own; expert weights get one exactly when the expert received tokens.
TEST(MoeLayer, GradientsReachRouterAndUsedExperts) {
  at::manual_seed(15);
  MoeOptions o = small_options();
  o.experts = 6;
  MoeLayer layer(o);
  at::Tensor x = at::randn({2, 8});  // 4 assignments over 6 experts: at least 2 stay empty
  auto router_grad = [&](int which) {
    layer->zero_grad();
    MoeLayerOutput out = layer->forward(x);
    at::Tensor loss = which == 0   ? (out.y_ND * at::randn_like(out.y_ND)).sum()
                      : which == 1 ? out.aux_loss
                                   : out.z_loss;
    loss.backward();
    return layer->router_DE.grad().abs().max().item<double>();
  };
  EXPECT_GT(router_grad(0), 0) << "through weight_NA";
  EXPECT_GT(router_grad(1), 0) << "through aux";
  EXPECT_GT(router_grad(2), 0) << "through z";

  layer->zero_grad();
  MoeLayerOutput out = layer->forward(x);
  (out.y_ND * at::randn_like(out.y_ND)).sum().backward();
  ASSERT_GE(out.tokens_per_expert_E.eq(0).sum().item<int64_t>(), 2);
  for (int64_t e = 0; e < 6; ++e) {
    const bool used = out.tokens_per_expert_E[e].item<int64_t>() > 0;
    for (const at::Tensor* p : {&layer->w1_EDF, &layer->b1_EF, &layer->w2_EFD, &layer->b2_ED}) {
      const double norm = p->grad()[e].abs().max().item<double>();
      if (used)
        EXPECT_GT(norm, 0) << "expert " << e;
      else
        EXPECT_EQ(norm, 0) << "expert " << e;
    }
  }
}

TEST(MoeLayer, CapacityDropsAndCounts) {
  at::manual_seed(16);
  MoeOptions o = small_options();
  o.capacity_factor =
      0.25;  // capacity = ceil(0.25 * 2 * 32 / 4) = 4 of 64 assignments over 4 experts
  MoeLayer layer(o);
  at::Tensor x = at::randn({32, 8});
  MoeLayerOutput out = layer->forward(x);
  EXPECT_GE(out.dropped.item<int64_t>(), 48);
  EXPECT_LE(out.tokens_per_expert_E.max().item<int64_t>(), 4);
  EXPECT_EQ(out.tokens_per_expert_E.sum().item<int64_t>() + out.dropped.item<int64_t>(), 64);
  // Expected drops from the router's own counts: sum_e max(0, count_e - 4).
  RouterOutput r = route(at::matmul(x, layer->router_DE), 2, true);
  at::Tensor count_E = at::bincount(r.expert_NA.reshape({-1}), {}, 4);
  EXPECT_EQ(out.dropped.item<int64_t>(), (count_E - 4).clamp_min(0).sum().item<int64_t>());

  o.capacity_factor =
      2.0;  // capacity 32: nothing can overflow with N = 32 tokens (distinct experts)
  MoeLayer roomy(o);
  EXPECT_EQ(roomy->forward(x).dropped.item<int64_t>(), 0);
}

TEST(MoeLayer, ParameterCounts) {
  // D = 4, F = 6, E = 3, k = 2: router 4 * 3 = 12; one expert 4*6 + 6 + 6*4 + 4 = 58.
  MoeOptions o;
  o.dim = 4;
  o.ffn_dim = 6;
  o.experts = 3;
  o.top_k = 2;
  MoeLayer layer(o);
  EXPECT_EQ(layer->parameter_count(), 12 + 3 * 58);
  EXPECT_EQ(layer->active_parameter_count(), 12 + 2 * 58);
  int64_t numel = 0;
  for (const auto& p : layer->parameters()) numel += p.numel();
  EXPECT_EQ(numel, layer->parameter_count());
  EXPECT_EQ(layer->named_parameters().size(), 5u);
  EXPECT_EQ(layer->b1_EF.abs().sum().item<double>(), 0);

  o.experts = 1;
  MoeLayer dense(o);
  EXPECT_EQ(dense->parameter_count(), 58);
  EXPECT_EQ(dense->active_parameter_count(), 58);

  o.experts = 3;
  o.top_k = 4;
  EXPECT_THROW(MoeLayer{o}, Error);
}

}  // namespace
}  // namespace mds
