// moe_ffn (sorted dispatch on CPU, grouped GEMMs on CUDA) and the grouped path itself against
// moe_ffn_reference (per-token loop), forward and backward, the statistics, and the capacity rule on
// literal examples. The grouped path runs on the CPU through group_gemm's per-group loop, so CI checks
// its sort, offsets, capacity, custom gradients and autocast casts; the CUDA tests (skipped without a
// GPU) check it again with LibTorch's grouped kernel.
//
// Dimensions: N tokens, D model dim, E experts, A = k active experts per token, F expert hidden.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#ifdef MDS_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"
#include "core/error.h"
#include "core/torch_compat.h"
#include "kernels/moe/moe.h"
#include "kernels/moe/moe_grouped.h"

namespace mds::kernels {
namespace {

using test::error_of;

struct Problem {
  at::Tensor x_ND, w1_EDF, b1_EF, w2_EFD, b2_ED, expert_NA, weight_NA;
  ExpertWeights experts() const { return {w1_EDF, b1_EF, w2_EFD, b2_ED}; }
  std::vector<at::Tensor> leaves() const { return {x_ND, w1_EDF, b1_EF, w2_EFD, b2_ED, weight_NA}; }
};

const char* kLeafNames[] = {"x_ND", "w1_EDF", "b1_EF", "w2_EFD", "b2_ED", "weight_NA"};

at::Tensor leaf(at::Tensor t) { return t.detach().requires_grad_(true); }

// Fresh random values (never zeros); weights scaled so that activations stay O(1).
Problem make_problem(int64_t N, int64_t D, int64_t E, int64_t A, int64_t F, at::ScalarType dtype,
                     at::Tensor expert_NA = {}) {
  const auto opt = at::TensorOptions().dtype(dtype);
  Problem p;
  p.x_ND = leaf(at::randn({N, D}, opt));
  p.w1_EDF = leaf(at::randn({E, D, F}, opt) / std::sqrt(static_cast<double>(D)));
  p.b1_EF = leaf(at::randn({E, F}, opt) * 0.1);
  p.w2_EFD = leaf(at::randn({E, F, D}, opt) / std::sqrt(static_cast<double>(F)));
  p.b2_ED = leaf(at::randn({E, D}, opt) * 0.1);
  // A distinct experts per token, in random order, as top-k would give.
  p.expert_NA = expert_NA.defined() ? expert_NA : std::get<1>(at::rand({N, E}).topk(A, -1));
  p.weight_NA = leaf(at::rand({N, p.expert_NA.size(1)}, opt) + 0.1);
  return p;
}

// The same problem as fresh leaves of another dtype and device.
Problem moved(const Problem& p, at::Device device, at::ScalarType dtype) {
  Problem q;
  const auto opt = at::TensorOptions().dtype(dtype).device(device);
  q.x_ND = leaf(p.x_ND.to(opt));
  q.w1_EDF = leaf(p.w1_EDF.to(opt));
  q.b1_EF = leaf(p.b1_EF.to(opt));
  q.w2_EFD = leaf(p.w2_EFD.to(opt));
  q.b2_ED = leaf(p.b2_ED.to(opt));
  q.weight_NA = leaf(p.weight_NA.to(opt));
  q.expert_NA = p.expert_NA.to(device);
  return q;
}

// Output and gradients of every leaf under the upstream gradient g_ND; an unused leaf gets zeros.
struct Result {
  at::Tensor y_ND;
  std::vector<at::Tensor> grads;
  MoeDispatchStats stats;
};

using MoeFn = std::function<at::Tensor(const at::Tensor&, const ExpertWeights&, const at::Tensor&,
                                       const at::Tensor&, int64_t, MoeDispatchStats*)>;

const MoeFn kFast = [](const at::Tensor& x, const ExpertWeights& w, const at::Tensor& e,
                       const at::Tensor& a, int64_t c, MoeDispatchStats* s) {
  return moe_ffn(x, w, e, a, c, s);
};
const MoeFn kGrouped = [](const at::Tensor& x, const ExpertWeights& w, const at::Tensor& e,
                          const at::Tensor& a, int64_t c, MoeDispatchStats* s) {
  return detail::moe_ffn_grouped(x, w, e, a, c, s);
};
const MoeFn kReference = [](const at::Tensor& x, const ExpertWeights& w, const at::Tensor& e,
                            const at::Tensor& a, int64_t c, MoeDispatchStats* s) {
  return moe_ffn_reference(x, w, e, a, c, s);
};

// With `autocast`, the forward runs under bfloat16 autocast on x's device and the backward outside it,
// as a training step does.
Result run(const MoeFn& fn, const Problem& p, int64_t capacity, const at::Tensor& g_ND,
           bool autocast = false) {
  Result r;
  std::vector<at::Tensor> leaves = p.leaves();
  for (auto& t : leaves) t.mutable_grad() = at::Tensor();
  {
    compat::AutocastScope scope(p.x_ND.device().type(), autocast, at::kBFloat16);
    r.y_ND = fn(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, capacity, &r.stats);
  }
  if (r.y_ND.requires_grad()) r.y_ND.backward(g_ND.to(r.y_ND.options()));
  for (auto& t : leaves)
    r.grads.push_back(t.grad().defined() ? t.grad().clone() : at::zeros_like(t));
  return r;
}

double tolerance(at::ScalarType dtype) { return dtype == at::kDouble ? 1e-12 : 1e-5; }

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  if (a.numel() == 0) return;
  const at::Tensor a64 = a.detach().to(at::kCPU, at::kDouble), b64 = b.detach().to(at::kCPU, at::kDouble);
  const double scale = std::max(1.0, b64.abs().max().item<double>());
  const double err = (a64 - b64).abs().max().item<double>();
  EXPECT_LE(err, tol * scale) << what << ": max abs error " << err << " (scale " << scale << ")";
}

void expect_same_stats(const MoeDispatchStats& fast, const MoeDispatchStats& ref, int64_t pairs,
                       const at::Device& device, const std::string& label) {
  ASSERT_TRUE(fast.tokens_per_expert_E.defined() && fast.dropped.defined()) << label;
  EXPECT_EQ(fast.tokens_per_expert_E.device().type(), device.type()) << label;
  EXPECT_EQ(fast.dropped.device().type(), device.type()) << label;
  EXPECT_EQ(fast.tokens_per_expert_E.scalar_type(), at::kLong) << label;
  EXPECT_EQ(fast.dropped.scalar_type(), at::kLong) << label;
  EXPECT_EQ(fast.dropped.dim(), 0) << label;
  EXPECT_TRUE(at::equal(fast.tokens_per_expert_E.cpu(), ref.tokens_per_expert_E.cpu()))
      << label << ": " << fast.tokens_per_expert_E << " vs " << ref.tokens_per_expert_E;
  EXPECT_EQ(fast.dropped.item<int64_t>(), ref.dropped.item<int64_t>()) << label;
  EXPECT_EQ(fast.tokens_per_expert_E.sum().item<int64_t>() + fast.dropped.item<int64_t>(), pairs)
      << label;
}

// Fast path == reference: output, stats and every gradient.
void check_against_reference(const Problem& p, int64_t capacity, const std::string& label,
                             const MoeFn& fast_fn = kFast) {
  const at::ScalarType dtype = p.x_ND.scalar_type();
  at::Tensor g_ND = at::randn(p.x_ND.sizes(), p.x_ND.options().requires_grad(false));
  Result fast = run(fast_fn, p, capacity, g_ND);
  Result ref = run(kReference, p, capacity, g_ND);
  const double tol = tolerance(dtype);
  expect_close(fast.y_ND, ref.y_ND, tol, label + " y_ND");
  EXPECT_EQ(fast.y_ND.scalar_type(), dtype) << label;
  for (size_t i = 0; i < fast.grads.size(); ++i)
    expect_close(fast.grads[i], ref.grads[i], tol, label + " grad " + kLeafNames[i]);
  expect_same_stats(fast.stats, ref.stats, p.expert_NA.numel(), p.x_ND.device(), label);
}

at::Tensor ids(std::vector<int64_t> values, int64_t rows, int64_t cols) {
  return at::tensor(values, at::TensorOptions().dtype(at::kLong)).view({rows, cols});
}

struct Shape {
  int64_t N, D, E, A, F;
};

TEST(MoeFfn, RandomRoutingMatchesReference) {
  at::manual_seed(1);
  const Shape shapes[] = {{1, 4, 2, 1, 3}, {7, 8, 4, 2, 16}, {64, 16, 8, 2, 32}, {33, 8, 3, 3, 5}};
  for (at::ScalarType dtype : {at::kDouble, at::kFloat})
    for (const Shape& s : shapes) {
      const std::string label = std::string(at::toString(dtype)) + " N" + std::to_string(s.N) +
                                " E" + std::to_string(s.E) + " A" + std::to_string(s.A);
      check_against_reference(make_problem(s.N, s.D, s.E, s.A, s.F, dtype), -1, label);
    }
}

TEST(MoeFfn, TokensPerExpertIsExact) {
  at::manual_seed(2);
  Problem p =
      make_problem(6, 4, 4, 2, 5, at::kDouble, ids({0, 3, 3, 0, 1, 3, 3, 1, 0, 1, 3, 0}, 6, 2));
  MoeDispatchStats stats;
  moe_ffn(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, -1, &stats);
  EXPECT_TRUE(at::equal(stats.tokens_per_expert_E, ids({4, 3, 0, 5}, 4, 1).view({4})))
      << stats.tokens_per_expert_E;
  EXPECT_EQ(stats.dropped.item<int64_t>(), 0);
  EXPECT_EQ(stats.tokens_per_expert_E.device(), at::Device(at::kCPU));
  MoeDispatchStats grouped;
  detail::moe_ffn_grouped(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, -1, &grouped);
  EXPECT_TRUE(at::equal(grouped.tokens_per_expert_E, stats.tokens_per_expert_E))
      << grouped.tokens_per_expert_E;
  EXPECT_EQ(grouped.dropped.item<int64_t>(), 0);
}

TEST(MoeFfn, AllTokensToOneExpert) {
  at::manual_seed(3);
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    Problem p = make_problem(9, 8, 4, 1, 6, dtype,
                             at::full({9, 1}, 2, at::TensorOptions().dtype(at::kLong)));
    check_against_reference(p, -1, "all to expert 2");
    MoeDispatchStats stats;
    moe_ffn(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, -1, &stats);
    EXPECT_TRUE(at::equal(stats.tokens_per_expert_E, ids({0, 0, 9, 0}, 4, 1).view({4})));
  }
}

// The expert weights' gradients (w1, b1, w2, b2) are nonzero exactly for the experts in `used`.
void expect_expert_gradients(const Result& r, const std::vector<bool>& used, const std::string& label) {
  for (size_t i = 1; i <= 4; ++i)
    for (int64_t e = 0; e < static_cast<int64_t>(used.size()); ++e) {
      const double norm = r.grads[i][e].abs().max().item<double>();
      if (used[static_cast<size_t>(e)])
        EXPECT_GT(norm, 0) << kLeafNames[i] << " expert " << e << label;
      else
        EXPECT_EQ(norm, 0) << kLeafNames[i] << " expert " << e << label;
    }
}

// Experts 1 and 3 of 5 receive nothing: their gradients are exactly zero, the others' are not.
TEST(MoeFfn, EmptyExpertsGetZeroGradient) {
  at::manual_seed(4);
  Problem p = make_problem(8, 6, 5, 2, 7, at::kDouble,
                           ids({0, 2, 2, 4, 4, 0, 0, 2, 2, 4, 4, 0, 0, 4, 2, 0}, 8, 2));
  check_against_reference(p, -1, "empty experts");
  Result r = run(kFast, p, -1, at::randn({8, 6}, at::kDouble));
  expect_expert_gradients(r, {true, false, true, false, true}, "");
  EXPECT_GT(r.grads[0].abs().min().item<double>(), 0);  // every token reached some expert
}

// k = E: every token visits every expert.
TEST(MoeFfn, TopKEqualsE) {
  at::manual_seed(5);
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    Problem p = make_problem(10, 4, 3, 3, 6, dtype);
    check_against_reference(p, -1, "k = E");
  }
}

// N = 4, A = 2, expert_NA = [[0, 1], [0, 1], [0, 2], [1, 0]], capacity 2. Priority order (slot 0 of
// every token, then slot 1): (0,0)->e0 #0, (1,0)->e0 #1, (2,0)->e0 #2 drop, (3,0)->e1 #0,
// (0,1)->e1 #1, (1,1)->e1 #2 drop, (2,1)->e2 #0, (3,1)->e0 #3 drop.
TEST(MoeFfn, CapacityKeepMaskByHand) {
  at::Tensor e_NA = ids({0, 1, 0, 1, 0, 2, 1, 0}, 4, 2);
  at::Tensor expected = ids({1, 1, 1, 0, 0, 1, 1, 0}, 4, 2).to(at::kBool);
  at::Tensor keep = capacity_keep_mask(e_NA, 3, 2);
  EXPECT_EQ(keep.scalar_type(), at::kBool);
  EXPECT_TRUE(at::equal(keep, expected)) << keep;
  EXPECT_TRUE(at::equal(capacity_keep_mask(e_NA, 3, -1), at::ones({4, 2}, at::kBool)));
  EXPECT_TRUE(at::equal(capacity_keep_mask(e_NA, 3, 0), at::zeros({4, 2}, at::kBool)));
  EXPECT_TRUE(at::equal(capacity_keep_mask(e_NA, 3, 4), at::ones({4, 2}, at::kBool)));
  // Capacity 1: e0 keeps (0,0), e1 keeps (3,0), e2 keeps (2,1).
  EXPECT_TRUE(
      at::equal(capacity_keep_mask(e_NA, 3, 1), ids({1, 0, 0, 0, 0, 1, 1, 0}, 4, 2).to(at::kBool)));

  at::manual_seed(6);
  Problem p = make_problem(4, 5, 3, 2, 4, at::kDouble, e_NA);
  for (int64_t capacity : {0, 1, 2, 3, 4})
    check_against_reference(p, capacity, "capacity " + std::to_string(capacity));
  MoeDispatchStats stats;
  at::Tensor y = moe_ffn(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, 2, &stats);
  EXPECT_EQ(stats.dropped.item<int64_t>(), 3);
  EXPECT_TRUE(at::equal(stats.tokens_per_expert_E, ids({2, 2, 1}, 3, 1).view({3})));

  // A dropped slot contributes nothing: token 1 keeps only slot 0, token 2 only slot 1, token 3
  // only slot 0.
  at::Tensor only_kept_NA = p.weight_NA.detach() * expected.to(at::kDouble);
  at::Tensor y_kept = moe_ffn(p.x_ND, p.experts(), p.expert_NA, only_kept_NA, -1);
  expect_close(y, y_kept, 1e-12, "dropped slots = zero weight");
  // Capacity 0 drops everything: the output is exactly 0.
  y = moe_ffn(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, 0, &stats);
  EXPECT_EQ(stats.dropped.item<int64_t>(), 8);
  EXPECT_TRUE(at::equal(y, at::zeros_like(y)));
  y = detail::moe_ffn_grouped(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, 0, &stats);
  EXPECT_EQ(stats.dropped.item<int64_t>(), 8);
  EXPECT_TRUE(at::equal(y, at::zeros_like(y)));
}

TEST(MoeFfn, CapacityOnRandomRoutingMatchesReference) {
  at::manual_seed(7);
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    Problem p = make_problem(40, 8, 4, 2, 8, dtype);
    for (int64_t capacity : {3, 12, 20}) check_against_reference(p, capacity, "random capacity");
  }
}

TEST(MoeFfn, BadShapesNameTheTensor) {
  at::manual_seed(8);
  Problem p = make_problem(5, 4, 3, 2, 6, at::kFloat);
  auto call = [&](Problem q) {
    return error_of([&] { moe_ffn(q.x_ND, q.experts(), q.expert_NA, q.weight_NA, -1); });
  };
  Problem q = p;
  q.w1_EDF = at::randn({3, 5, 6});
  EXPECT_NE(call(q).find("w1_EDF"), std::string::npos) << call(q);
  q = p;
  q.b1_EF = at::randn({3, 7});
  EXPECT_NE(call(q).find("b1_EF must be [E, F] = [3, 6], got [3, 7]"), std::string::npos)
      << call(q);
  q = p;
  q.w2_EFD = at::randn({3, 6, 5});
  EXPECT_NE(call(q).find("w2_EFD"), std::string::npos) << call(q);
  q = p;
  q.b2_ED = at::randn({2, 4});
  EXPECT_NE(call(q).find("b2_ED"), std::string::npos) << call(q);
  q = p;
  q.x_ND = at::randn({5, 4, 1});
  EXPECT_NE(call(q).find("x_ND must be [N, D], got [5, 4, 1]"), std::string::npos) << call(q);
  q = p;
  q.expert_NA = q.expert_NA.narrow(0, 0, 4);
  EXPECT_NE(call(q).find("expert_NA"), std::string::npos) << call(q);
  q = p;
  q.expert_NA = q.expert_NA.to(at::kInt);
  EXPECT_NE(call(q).find("expert_NA must be int64"), std::string::npos) << call(q);
  q = p;
  q.expert_NA = ids({0, 1, 2, 0, 1, 3, 0, 1, 2, 0}, 5, 2);  // id 3 with E = 3
  EXPECT_NE(call(q).find("outside [0, E) with E = 3"), std::string::npos) << call(q);
  q = p;
  q.weight_NA = at::rand({5, 3});
  EXPECT_NE(call(q).find("weight_NA must be [N, A] = [5, 2], got [5, 3]"), std::string::npos)
      << call(q);
  q = p;
  q.w2_EFD = q.w2_EFD.to(at::kDouble);
  EXPECT_NE(call(q).find("w2_EFD is Double but x_ND is Float"), std::string::npos) << call(q);
  EXPECT_NE(error_of([&] {
              capacity_keep_mask(ids({0, 2}, 1, 2), 2, 1);
            }).find("capacity_keep_mask"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              moe_ffn_reference(q.x_ND, q.experts(), q.expert_NA, q.weight_NA, -1);
            }).find("moe_ffn_reference: w2_EFD"),
            std::string::npos);
}

// ---------------------------------------------------------------------------- grouped path

// bfloat16 against a float32 or float64 reference. Each bf16 rounding (x, the weights, h, y, the
// upstream gradient, the router weights, elementwise products) is within 2^-9 = 0.2% relative, with
// float32 accumulation in the products; chains of them measured up to 1% of max|ref| in the worst
// element and 0.9% of ||ref|| overall (the router-weight gradient, a dot product with cancellation)
// on the CPU. Allowed: 4% and 2%, which a wrong index or a missing term (O(1) errors) still exceed.
void expect_bf16_close(const at::Tensor& a, const at::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  if (a.numel() == 0) return;
  const at::Tensor a64 = a.detach().to(at::kCPU, at::kDouble), b64 = b.detach().to(at::kCPU, at::kDouble);
  const double scale = b64.abs().max().item<double>(), norm = b64.norm().item<double>();
  const double err = (a64 - b64).abs().max().item<double>();
  const double norm_err = (a64 - b64).norm().item<double>();
  EXPECT_TRUE(std::isfinite(err)) << what;
  EXPECT_LE(err, 4e-2 * scale + 1e-6) << what << ": max abs error " << err << ", max |ref| " << scale;
  EXPECT_LE(norm_err, 2e-2 * norm + 1e-6) << what << ": ||error|| " << norm_err << ", ||ref|| " << norm;
}

TEST(MoeGrouped, MatchesReferenceDroplessAndWithCapacity) {
  at::manual_seed(21);
  const Shape shapes[] = {{1, 4, 2, 1, 3},   {1, 6, 3, 2, 5},  {2, 4, 2, 2, 3},  {7, 8, 4, 2, 16},
                          {64, 16, 8, 2, 32}, {33, 8, 3, 3, 5}, {40, 8, 4, 1, 8}};
  for (at::ScalarType dtype : {at::kDouble, at::kFloat})
    for (const Shape& s : shapes) {
      Problem p = make_problem(s.N, s.D, s.E, s.A, s.F, dtype);
      const int64_t M = s.N * s.A;
      for (int64_t capacity : {int64_t{-1}, int64_t{0}, int64_t{1}, M / s.E / 2, M / s.E, M}) {
        const std::string label = std::string(at::toString(dtype)) + " N" + std::to_string(s.N) +
                                  " E" + std::to_string(s.E) + " A" + std::to_string(s.A) +
                                  " capacity " + std::to_string(capacity);
        check_against_reference(p, capacity, label, kGrouped);
      }
    }
}

// Experts 0 and 4 of 5 receive nothing. Under a capacity the dropped rows still sit in the last
// expert's group (as zero rows): expert 4's gradients must stay exactly zero all the same.
TEST(MoeGrouped, EmptyExpertsGetZeroGradient) {
  at::manual_seed(22);
  Problem p = make_problem(8, 6, 5, 2, 7, at::kDouble,
                           ids({1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3, 1, 1, 3, 2, 1}, 8, 2));
  for (int64_t capacity : {-1, 3}) {
    check_against_reference(p, capacity, "empty experts, capacity " + std::to_string(capacity),
                            kGrouped);
    Result r = run(kGrouped, p, capacity, at::randn({8, 6}, at::kDouble));
    EXPECT_EQ(r.stats.dropped.item<int64_t>(), capacity < 0 ? 0 : 7);
    expect_expert_gradients(r, {false, true, true, true, false}, " capacity " + std::to_string(capacity));
  }
}

// Everything to the first or to the last expert (whose group also takes the dropped rows).
TEST(MoeGrouped, AllTokensToOneExpert) {
  at::manual_seed(23);
  for (int64_t expert : {0, 3})
    for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
      Problem p = make_problem(9, 8, 4, 1, 6, dtype,
                               at::full({9, 1}, expert, at::TensorOptions().dtype(at::kLong)));
      for (int64_t capacity : {-1, 4})
        check_against_reference(p, capacity, "all to expert " + std::to_string(expert), kGrouped);
    }
}

TEST(MoeGrouped, NoTokens) {
  at::manual_seed(24);
  Problem p = make_problem(0, 4, 3, 2, 5, at::kDouble, at::zeros({0, 2}, at::kLong));
  for (const MoeFn& fn : {kGrouped, kFast, kReference})
    for (int64_t capacity : {-1, 2}) {
      MoeDispatchStats stats;
      at::Tensor y = fn(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, capacity, &stats);
      EXPECT_EQ(y.sizes(), (at::IntArrayRef{0, 4}));
      EXPECT_TRUE(at::equal(stats.tokens_per_expert_E, at::zeros({3}, at::kLong)))
          << stats.tokens_per_expert_E;
      EXPECT_EQ(stats.dropped.item<int64_t>(), 0);
    }
}

// Under CPU autocast the grouped path computes in bfloat16 and returns bfloat16, as an autocast
// matmul would; the gradients reach the float32 masters in float32. CI runs the mixed-precision path
// here; MoeGroupedCuda checks it again with the grouped kernel.
TEST(MoeGrouped, AutocastComputesInBf16) {
  at::manual_seed(25);
  Problem p = make_problem(48, 16, 4, 2, 24, at::kFloat);
  for (int64_t capacity : {-1, 10}) {
    const std::string label = "autocast capacity " + std::to_string(capacity);
    at::Tensor g_ND = at::randn({48, 16});
    Result ref = run(kReference, p, capacity, g_ND);
    Result fp32 = run(kGrouped, p, capacity, g_ND);
    Result bf16 = run(kGrouped, p, capacity, g_ND, /*autocast=*/true);
    EXPECT_EQ(fp32.y_ND.scalar_type(), at::kFloat) << label;
    EXPECT_EQ(bf16.y_ND.scalar_type(), at::kBFloat16) << label;
    expect_bf16_close(bf16.y_ND, ref.y_ND, label + " y_ND");
    // It did compute in bf16: far from the float32 result, compared with float32 rounding.
    EXPECT_GT((bf16.y_ND.to(at::kFloat) - fp32.y_ND).abs().max().item<double>(), 1e-4) << label;
    for (size_t i = 0; i < bf16.grads.size(); ++i) {
      EXPECT_EQ(bf16.grads[i].scalar_type(), at::kFloat) << label << " " << kLeafNames[i];
      expect_bf16_close(bf16.grads[i], ref.grads[i], label + " grad " + kLeafNames[i]);
    }
    expect_same_stats(bf16.stats, ref.stats, 96, at::Device(at::kCPU), label);
  }
}

// group_gemm against one float64 product per group: groups of 4, 0, 9, 0 and 10 rows, then 3 rows
// past the last offset (unspecified: not compared; they get no gradient into b).
void check_group_gemm(at::Device device, at::ScalarType dtype, double tol) {
  const std::string label = std::string(at::toString(dtype)) + " on " + device.str();
  const auto opt = at::TensorOptions().dtype(dtype).device(device);
  const std::vector<int64_t> counts = {4, 0, 9, 0, 10};
  const int64_t G = 5, K = 16, Nout = 24, kept = 23, M = kept + 3;
  at::Tensor a = leaf(at::randn({M, K}, opt));
  at::Tensor b = leaf(at::randn({G, K, Nout}, opt) / 4.0);
  at::Tensor offs = at::tensor(std::vector<int64_t>{4, 4, 13, 13, 23}).to(opt.dtype(at::kInt));
  at::Tensor g = at::randn({M, Nout}, opt);
  at::Tensor out = detail::group_gemm(a, b, offs);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{M, Nout})) << label;
  out.backward(g);

  at::Tensor a64 = a.detach().to(at::kCPU, at::kDouble).requires_grad_(true);
  at::Tensor b64 = b.detach().to(at::kCPU, at::kDouble).requires_grad_(true);
  std::vector<at::Tensor> parts;
  int64_t start = 0;
  for (int64_t i = 0; i < G; ++i) {
    parts.push_back(at::mm(a64.narrow(0, start, counts[i]), b64[i]));
    start += counts[i];
  }
  at::Tensor ref = at::cat(parts, 0);
  ref.backward(g.narrow(0, 0, kept).to(at::kCPU, at::kDouble));
  expect_close(out.narrow(0, 0, kept), ref, tol, label + " out");
  expect_close(a.grad().narrow(0, 0, kept), a64.grad().narrow(0, 0, kept), tol, label + " grad a");
  expect_close(b.grad(), b64.grad(), tol, label + " grad b");
  EXPECT_EQ(b.grad()[1].abs().max().item<double>(), 0) << label << ": empty group";
  EXPECT_EQ(b.grad()[3].abs().max().item<double>(), 0) << label << ": empty group";
}

TEST(MoeGrouped, GroupGemmMatchesPerGroupProducts) {
  at::manual_seed(26);
  check_group_gemm(at::Device(at::kCPU), at::kDouble, 1e-12);
  check_group_gemm(at::Device(at::kCPU), at::kFloat, 1e-5);
  EXPECT_THROW(detail::group_gemm(at::randn({4, 2}), at::randn({2, 2, 3}),
                                  at::tensor(std::vector<int>{3, 2})),
               Error);
}

// ---------------------------------------------------------------------------- CUDA

// moe_ffn (or `fn`) on CUDA against the float64 CPU reference of the same values: float32 to within
// 1e-4 of max(1, max|ref|) (float32 products, no TF32), or under bfloat16 autocast within
// expect_bf16_close.
void check_cuda_against_reference(const Problem& p, int64_t capacity, bool autocast,
                                  const std::string& label, const MoeFn& fn = kFast) {
  const at::Device cuda(at::kCUDA);
  Problem ref_p = moved(p, at::Device(at::kCPU), at::kDouble);
  Problem gpu_p = moved(p, cuda, at::kFloat);
  at::Tensor g_ND = at::randn(p.x_ND.sizes(), at::kDouble);
  Result ref = run(kReference, ref_p, capacity, g_ND);
  Result gpu = run(fn, gpu_p, capacity, g_ND.to(cuda), autocast);
  EXPECT_TRUE(gpu.y_ND.is_cuda()) << label;
  EXPECT_EQ(gpu.y_ND.scalar_type(), autocast ? at::kBFloat16 : at::kFloat) << label;
  auto compare = [&](const at::Tensor& a, const at::Tensor& b, const std::string& what) {
    if (autocast)
      expect_bf16_close(a, b, label + " " + what);
    else
      expect_close(a, b, 1e-4, label + " " + what);
  };
  compare(gpu.y_ND, ref.y_ND, "y_ND");
  for (size_t i = 0; i < gpu.grads.size(); ++i) {
    EXPECT_EQ(gpu.grads[i].scalar_type(), at::kFloat) << label << " " << kLeafNames[i];
    compare(gpu.grads[i], ref.grads[i], std::string("grad ") + kLeafNames[i]);
  }
  expect_same_stats(gpu.stats, ref.stats, p.expert_NA.numel(), cuda, label);
}

TEST(MoeGroupedCuda, GroupGemmMatchesPerGroupProducts) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(31);
  const at::Device cuda(at::kCUDA);
  check_group_gemm(cuda, at::kFloat, 1e-4);
  check_group_gemm(cuda, at::kBFloat16, 2e-2);
  check_group_gemm(cuda, at::kDouble, 1e-12);  // no grouped kernel for float64: the loop
  // The shapes moe_ffn gives it (rows of 16-byte multiples) take LibTorch's kernel where it has one.
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(cuda);
  EXPECT_EQ(detail::group_gemm_is_grouped(at::zeros({32, 72}, bf16), at::zeros({4, 72, 64}, bf16)),
            compat::kHasGroupedMm);
  EXPECT_FALSE(detail::group_gemm_is_grouped(at::zeros({32, 12}, bf16), at::zeros({4, 12, 64}, bf16)));
  const auto f32 = bf16.dtype(at::kFloat);
  EXPECT_FALSE(detail::group_gemm_is_grouped(at::zeros({32, 72}, f32), at::zeros({4, 72, 64}, f32)));
}

TEST(MoeGroupedCuda, Float32MatchesReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(32);
  EXPECT_FALSE(detail::grouped_kernel_applies(at::zeros({4, 8}, at::TensorOptions().device(at::kCUDA))));
  // D, F multiples of 8: the grouped kernel; D = 6, F = 10: group_gemm's loop on CUDA.
  const Shape shapes[] = {{96, 64, 8, 2, 128}, {1, 64, 8, 2, 128}, {37, 32, 4, 1, 48},
                          {50, 6, 3, 2, 10}};
  for (const Shape& s : shapes) {
    Problem p = make_problem(s.N, s.D, s.E, s.A, s.F, at::kDouble);
    const int64_t M = s.N * s.A;
    for (int64_t capacity : {int64_t{-1}, M / s.E / 2, int64_t{0}}) {
      const std::string label = "cuda fp32 N" + std::to_string(s.N) + " D" + std::to_string(s.D) +
                                " capacity " + std::to_string(capacity);
      check_cuda_against_reference(p, capacity, false, label + " moe_ffn");
      check_cuda_against_reference(p, capacity, false, label + " grouped", kGrouped);
    }
  }
}

TEST(MoeGroupedCuda, AutocastBf16MatchesReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(33);
  {
    compat::AutocastScope scope(at::kCUDA, true, at::kBFloat16);
    EXPECT_EQ(detail::grouped_kernel_applies(at::zeros({4, 8}, at::TensorOptions().device(at::kCUDA))),
              compat::kHasGroupedMm);
  }
  const Shape shapes[] = {{300, 64, 8, 2, 128}, {64, 32, 4, 2, 64}};
  for (const Shape& s : shapes) {
    Problem p = make_problem(s.N, s.D, s.E, s.A, s.F, at::kDouble);
    for (int64_t capacity : {int64_t{-1}, s.N * s.A / s.E / 2})
      check_cuda_against_reference(p, capacity, true,
                                   "cuda bf16 N" + std::to_string(s.N) + " capacity " +
                                       std::to_string(capacity));
  }
}

#ifdef MDS_WITH_CUDA
// With CUDA's sync debug mode set to error, any host sync inside moe_ffn (forward or backward) throws.
// Under bf16 autocast only, where the grouped kernel exists: group_gemm's loop (float32) syncs by
// design.
TEST(MoeGroupedCuda, ForwardAndBackwardDoNotSync) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (!compat::kHasGroupedMm) GTEST_SKIP() << "no grouped GEMM in this LibTorch: the loop syncs";
  at::manual_seed(34);
  const at::Device cuda(at::kCUDA);
  Problem p = moved(make_problem(256, 64, 8, 2, 128, at::kFloat), cuda, at::kFloat);
  const at::Tensor g_ND = at::randn({256, 64}, at::TensorOptions().device(cuda));
  run(kFast, p, -1, g_ND, /*autocast=*/true);  // warm-up: allocator, cuBLAS handles
  auto& state = c10::cuda::warning_state();
  const auto previous = state.get_sync_debug_mode();
  std::string failure;
  state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  try {
    for (int64_t capacity : {-1, 40}) run(kFast, p, capacity, g_ND, /*autocast=*/true);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  state.set_sync_debug_mode(previous);
  EXPECT_EQ(failure, "");
  // The check is live: a plain .item() throws under it.
  state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  bool threw = false;
  try {
    (void)g_ND.sum().item<double>();
  } catch (const std::exception&) {
    threw = true;
  }
  state.set_sync_debug_mode(previous);
  EXPECT_TRUE(threw);
}
#endif

}  // namespace
}  // namespace mds::kernels
