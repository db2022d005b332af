// moe_ffn (sorted dispatch) against moe_ffn_reference (per-token loop), forward and backward, and
// the capacity rule on literal examples.
//
// Dimensions: N tokens, D model dim, E experts, A = k active experts per token, F expert hidden.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/moe/moe.h"

namespace mds::kernels {
namespace {

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

// Output and gradients of every leaf under the upstream gradient g_ND; an unused leaf gets zeros.
struct Result {
  at::Tensor y_ND;
  std::vector<at::Tensor> grads;
  MoeDispatchStats stats;
};

template <typename Fn>
Result run(Fn&& fn, const Problem& p, int64_t capacity, const at::Tensor& g_ND) {
  Result r;
  std::vector<at::Tensor> leaves = p.leaves();
  for (auto& t : leaves) t.mutable_grad() = at::Tensor();
  r.y_ND = fn(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, capacity, &r.stats);
  if (r.y_ND.requires_grad()) r.y_ND.backward(g_ND);
  for (auto& t : leaves)
    r.grads.push_back(t.grad().defined() ? t.grad().clone() : at::zeros_like(t));
  return r;
}

double tolerance(at::ScalarType dtype) { return dtype == at::kDouble ? 1e-12 : 1e-5; }

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  const double err = (a - b).abs().max().item<double>();
  EXPECT_LE(err, tol * scale) << what << ": max abs error " << err << " (scale " << scale << ")";
}

// Fast path == reference: output, stats and every gradient.
void check_against_reference(const Problem& p, int64_t capacity, const std::string& label) {
  const at::ScalarType dtype = p.x_ND.scalar_type();
  at::Tensor g_ND = at::randn(p.x_ND.sizes(), p.x_ND.options().requires_grad(false));
  Result fast = run(moe_ffn, p, capacity, g_ND);
  Result ref = run(moe_ffn_reference, p, capacity, g_ND);
  const double tol = tolerance(dtype);
  expect_close(fast.y_ND, ref.y_ND, tol, label + " y_ND");
  EXPECT_EQ(fast.y_ND.scalar_type(), dtype) << label;
  for (size_t i = 0; i < fast.grads.size(); ++i)
    expect_close(fast.grads[i], ref.grads[i], tol, label + " grad " + kLeafNames[i]);
  EXPECT_TRUE(at::equal(fast.stats.tokens_per_expert_E, ref.stats.tokens_per_expert_E)) << label;
  EXPECT_EQ(fast.stats.dropped, ref.stats.dropped) << label;
  EXPECT_EQ(fast.stats.tokens_per_expert_E.sum().item<int64_t>() + fast.stats.dropped,
            p.expert_NA.numel());
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
  EXPECT_EQ(stats.dropped, 0);
  EXPECT_EQ(stats.tokens_per_expert_E.device(), at::Device(at::kCPU));
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

// Experts 1 and 3 of 5 receive nothing: their gradients are exactly zero, the others' are not.
TEST(MoeFfn, EmptyExpertsGetZeroGradient) {
  at::manual_seed(4);
  Problem p = make_problem(8, 6, 5, 2, 7, at::kDouble,
                           ids({0, 2, 2, 4, 4, 0, 0, 2, 2, 4, 4, 0, 0, 4, 2, 0}, 8, 2));
  check_against_reference(p, -1, "empty experts");
  Result r = run(moe_ffn, p, -1, at::randn({8, 6}, at::kDouble));
  const std::vector<bool> used = {true, false, true, false, true};
  for (size_t i = 1; i <= 4; ++i)  // w1, b1, w2, b2
    for (int64_t e = 0; e < 5; ++e) {
      const double norm = r.grads[i][e].abs().max().item<double>();
      if (used[static_cast<size_t>(e)])
        EXPECT_GT(norm, 0) << kLeafNames[i] << " expert " << e;
      else
        EXPECT_EQ(norm, 0) << kLeafNames[i] << " expert " << e;
    }
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
  EXPECT_EQ(stats.dropped, 3);
  EXPECT_TRUE(at::equal(stats.tokens_per_expert_E, ids({2, 2, 1}, 3, 1).view({3})));

  // A dropped slot contributes nothing: token 1 keeps only slot 0, token 2 only slot 1, token 3
  // only slot 0.
  at::Tensor only_kept_NA = p.weight_NA.detach() * expected.to(at::kDouble);
  at::Tensor y_kept = moe_ffn(p.x_ND, p.experts(), p.expert_NA, only_kept_NA, -1);
  expect_close(y, y_kept, 1e-12, "dropped slots = zero weight");
  // Capacity 0 drops everything: the output is exactly 0.
  y = moe_ffn(p.x_ND, p.experts(), p.expert_NA, p.weight_NA, 0, &stats);
  EXPECT_EQ(stats.dropped, 8);
  EXPECT_TRUE(at::equal(y, at::zeros_like(y)));
}

TEST(MoeFfn, CapacityOnRandomRoutingMatchesReference) {
  at::manual_seed(7);
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    Problem p = make_problem(40, 8, 4, 2, 8, dtype);
    for (int64_t capacity : {3, 12, 20}) check_against_reference(p, capacity, "random capacity");
  }
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
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

}  // namespace
}  // namespace mds::kernels
