// Expert parallelism: the experts of a MoE layer sharded over ranks, tokens exchanged with all-to-all.
// Two ranks (threads, c10d Gloo on loopback) give the outputs and every gradient of one process holding
// all the experts (kernels::moe_ffn_reference), in float64; one rank is the layer itself.
#include "model/expert_parallel.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kernels/moe/moe.h"
#include "core/config.h"
#include "model/denoiser.h"
#include "model/model_options.h"
#include "model/moe_layer.h"
#include "runtime/distributed.h"
#include "rank_threads.h"
#include "test_util.h"
#include "train/expert_exchange.h"

namespace mds {
namespace {

constexpr int64_t kE = 4, kD = 3, kF = 5, kA = 2;
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

struct Full {
  torch::Tensor w1, b1, w2, b2;
  kernels::ExpertWeights all() const { return {w1, b1, w2, b2}; }
  // Experts [first, first + n), as leaves of their own (a rank's shard).
  kernels::ExpertWeights shard(int64_t first, int64_t n) const {
    auto cut = [&](const torch::Tensor& t) { return t.slice(0, first, first + n).detach().clone().requires_grad_(); };
    return {cut(w1), cut(b1), cut(w2), cut(b2)};
  }
};

Full make_full() {
  return {torch::randn({kE, kD, kF}, kF64).requires_grad_(), torch::randn({kE, kF}, kF64).requires_grad_(),
          torch::randn({kE, kF, kD}, kF64).requires_grad_(), torch::randn({kE, kD}, kF64).requires_grad_()};
}

// One rank's batch: N tokens, each routed to kA distinct experts with random weights; the loss is
// sum(y * g) for a fixed g.
struct Batch {
  torch::Tensor x, expert, weight, g;
};

Batch make_batch(int64_t n) {
  Batch b;
  b.x = torch::randn({n, kD}, kF64).requires_grad_();
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < n; ++i) rows.push_back(torch::randperm(kE, torch::kLong).slice(0, 0, kA));
  b.expert = torch::stack(rows);
  b.weight = torch::rand({n, kA}, kF64).requires_grad_();
  b.g = torch::randn({n, kD}, kF64);
  return b;
}

Batch copy_of(const Batch& b) {
  return {b.x.detach().clone().requires_grad_(), b.expert.clone(), b.weight.detach().clone().requires_grad_(), b.g};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  EXPECT_TRUE(torch::allclose(a, b, 1e-11, 1e-11)) << what << ": largest difference "
                                                   << (a - b).abs().max().item<double>();
}

struct OneRank : model::ExpertExchange {
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  at::Tensor all_to_all(const at::Tensor& input, const std::vector<int64_t>&, const std::vector<int64_t>&) override {
    return input;
  }
};

TEST(ExpertParallel, OneRankIsTheLayer) {
  torch::manual_seed(3);
  const Full full = make_full();
  const Batch ref = make_batch(7), ep = copy_of(ref);
  const kernels::ExpertWeights shard = full.shard(0, kE);
  (kernels::moe_ffn_reference(ref.x, full.all(), ref.expert, ref.weight, -1) * ref.g).sum().backward();
  OneRank group;
  torch::Tensor tokens;
  const torch::Tensor y = model::moe_ffn_expert_parallel(group, ep.x, shard, ep.expert, ep.weight, kE, &tokens);
  (y * ep.g).sum().backward();
  expect_close(y, kernels::moe_ffn_reference(ref.x, full.all(), ref.expert, ref.weight, -1), "y");
  expect_close(ep.x.grad(), ref.x.grad(), "dx");
  expect_close(ep.weight.grad(), ref.weight.grad(), "d weight_NA");
  expect_close(shard.w1_EDF.grad(), full.w1.grad(), "d w1");
  expect_close(shard.b2_ED.grad(), full.b2.grad(), "d b2");
  EXPECT_EQ(tokens.sum().item<int64_t>(), 7 * kA);
}

TEST(ExpertParallel, TwoRanksOverGlooMatchOneProcessWithEveryExpert) {
  if (runtime::available_backends().find("gloo") == std::string::npos) GTEST_SKIP() << "no Gloo in this build";
  torch::manual_seed(5);
  const Full full = make_full();
  // Different token counts per rank; rank 1's tokens all go to rank 0's experts, so rank 1's experts
  // see rank 0's tokens only.
  std::vector<Batch> ref = {make_batch(6), make_batch(3)};
  ref[1].expert = torch::tensor({0, 1, 1, 0, 0, 1}, torch::kLong).reshape({3, kA});
  std::vector<Batch> ep = {copy_of(ref[0]), copy_of(ref[1])};
  torch::Tensor loss = torch::zeros({}, kF64);
  std::vector<torch::Tensor> y_ref;
  for (const Batch& b : ref) {
    y_ref.push_back(kernels::moe_ffn_reference(b.x, full.all(), b.expert, b.weight, -1));
    loss = loss + (y_ref.back() * b.g).sum();
  }
  loss.backward();

  std::vector<kernels::ExpertWeights> shards = {full.shard(0, 2), full.shard(2, 2)};
  std::vector<torch::Tensor> y(2), tokens(2);
  const std::vector<std::string> errors = test::run_ranks(2, [&](runtime::Collective& c, int rank) {
    const auto r = static_cast<std::size_t>(rank);
    train::CollectiveExpertExchange group(c);
    y[r] = model::moe_ffn_expert_parallel(group, ep[r].x, shards[r], ep[r].expert, ep[r].weight, kE, &tokens[r]);
    (y[r] * ep[r].g).sum().backward();  // its own backward: the exchanges of the gradients pair up
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  for (std::size_t r = 0; r < 2; ++r) {
    const std::string at = " of rank " + std::to_string(r);
    expect_close(y[r], y_ref[r], "y" + at);
    expect_close(ep[r].x.grad(), ref[r].x.grad(), "dx" + at);
    expect_close(ep[r].weight.grad(), ref[r].weight.grad(), "d weight_NA" + at);
    // A shard's gradients hold both ranks' tokens: the full gradient's slice.
    const int64_t first = static_cast<int64_t>(r) * 2;
    expect_close(shards[r].w1_EDF.grad(), full.w1.grad().slice(0, first, first + 2), "d w1" + at);
    expect_close(shards[r].b1_EF.grad(), full.b1.grad().slice(0, first, first + 2), "d b1" + at);
    expect_close(shards[r].w2_EFD.grad(), full.w2.grad().slice(0, first, first + 2), "d w2" + at);
    expect_close(shards[r].b2_ED.grad(), full.b2.grad().slice(0, first, first + 2), "d b2" + at);
  }
  // Assignments each rank's experts received, from both ranks: 9 tokens x 2 in all.
  EXPECT_EQ(tokens[0].sum().item<int64_t>() + tokens[1].sum().item<int64_t>(), 9 * kA);
  EXPECT_EQ(tokens[1].sum().item<int64_t>(), (ref[0].expert >= 2).sum().item<int64_t>());
}

// The layer: two shards built from the same seed hold the whole layer's experts, and two ranks give
// its outputs, auxiliary losses and gradients (the replicated router's summed over the ranks, as the
// data-parallel all-reduce sums it).
TEST(ExpertParallel, AShardedLayerOnTwoRanksIsTheWholeLayer) {
  if (runtime::available_backends().find("gloo") == std::string::npos) GTEST_SKIP() << "no Gloo in this build";
  model::MoeOptions o;
  o.dim = 6;
  o.ffn_dim = 10;
  o.experts = 4;
  o.top_k = 2;
  torch::manual_seed(11);
  model::MoeLayer whole(o);
  std::vector<model::MoeLayer> shards;
  for (int64_t r = 0; r < 2; ++r) {
    model::MoeOptions so = o;
    so.expert_shards = 2;
    so.expert_shard = r;
    torch::manual_seed(11);
    shards.emplace_back(so);
    EXPECT_TRUE(torch::equal(shards.back()->w1_EDF, whole->w1_EDF.slice(0, 2 * r, 2 * r + 2)));
    EXPECT_TRUE(torch::equal(shards.back()->router_DE, whole->router_DE));
  }
  const std::vector<torch::Tensor> x = {torch::randn({7, 6}), torch::randn({4, 6})};
  const std::vector<torch::Tensor> g = {torch::randn({7, 6}), torch::randn({4, 6})};
  std::vector<torch::Tensor> y_ref, aux_ref;
  torch::Tensor loss = torch::zeros({});
  for (std::size_t r = 0; r < 2; ++r) {
    const model::MoeLayerOutput out = whole->forward(x[r]);
    y_ref.push_back(out.y_ND);
    aux_ref.push_back(out.aux_loss);
    loss = loss + (out.y_ND * g[r]).sum();
  }
  loss.backward();

  std::vector<model::MoeLayerOutput> out(2);
  const std::vector<std::string> errors = test::run_ranks(2, [&](runtime::Collective& c, int rank) {
    const auto r = static_cast<std::size_t>(rank);
    train::CollectiveExpertExchange group(c);
    shards[r]->set_expert_exchange(&group);
    out[r] = shards[r]->forward(x[r]);
    (out[r].y_ND * g[r]).sum().backward();
    shards[r]->set_expert_exchange(nullptr);
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  auto close = [](const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
    ASSERT_TRUE(a.defined() && b.defined()) << what;
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << what << ": largest difference " << (a - b).abs().max().item<double>();
  };
  for (std::size_t r = 0; r < 2; ++r) {
    const std::string at = " of rank " + std::to_string(r);
    close(out[r].y_ND, y_ref[r], "y" + at);
    close(out[r].aux_loss, aux_ref[r], "aux loss" + at);
    const int64_t first = static_cast<int64_t>(r) * 2;
    close(shards[r]->w1_EDF.grad(), whole->w1_EDF.grad().slice(0, first, first + 2), "d w1" + at);
    close(shards[r]->b2_ED.grad(), whole->b2_ED.grad().slice(0, first, first + 2), "d b2" + at);
  }
  close(shards[0]->router_DE.grad() + shards[1]->router_DE.grad(), whole->router_DE.grad(), "d router, summed");
  EXPECT_EQ(out[0].tokens_per_expert_E.sum().item<int64_t>(), 7 * 2);

  model::MoeOptions capped = o;
  capped.expert_shards = 2;
  capped.capacity_factor = 1.25;
  const std::string e = test::error_of([&] { model::MoeLayer bad(capped); });
  EXPECT_NE(e.find("no capacity"), std::string::npos) << e;
  const std::string alone = test::error_of([&] { shards[1]->forward(x[1]); });
  EXPECT_NE(alone.find("needs its group"), std::string::npos) << alone;
}

// The whole denoiser with its MoE layers sharded over two ranks gives the unsharded model's x0 on each
// rank's batch, and its gradients: the replicated parameters' summed over the ranks, the experts' sliced.
TEST(ExpertParallel, AShardedDenoiserOnTwoRanksIsTheWholeModel) {
  if (runtime::available_backends().find("gloo") == std::string::npos) GTEST_SKIP() << "no Gloo in this build";
  const model::ModelOptions o = model::model_options_from_config(
      Config::load("", {"model.embed_dim=8", "model.dim=16", "model.layers=2", "model.heads=2", "model.ffn_dim=24",
                        "model.time_embed_dim=8", "moe.experts=4", "moe.top_k=2", "attention.type=dense",
                        "model.dropout=0", "data.max_src_len=8", "data.max_trg_len=8"}),
      /*vocab_size=*/50);
  torch::manual_seed(21);
  model::Denoiser whole(o);
  std::vector<model::Denoiser> shards;
  for (int64_t r = 0; r < 2; ++r) {
    model::ModelOptions so = o;
    so.expert_shards = 2;
    so.expert_shard = r;
    torch::manual_seed(21);
    shards.emplace_back(so);
  }
  struct In {
    torch::Tensor x, t, key, global, g;
  };
  std::vector<In> in;
  for (int64_t B : {2, 3}) {
    in.push_back({torch::randn({B, 6, 8}), torch::rand({B}) * 1000, torch::ones({B, 6}, torch::kBool),
                  torch::zeros({B, 6}, torch::kBool), torch::randn({B, 6, 8})});
  }
  std::vector<torch::Tensor> x0_ref;
  torch::Tensor loss = torch::zeros({});
  for (const In& i : in) {
    x0_ref.push_back(whole->forward(i.x, i.t, i.key, i.global).x0_BLC);
    loss = loss + (x0_ref.back() * i.g).sum();
  }
  loss.backward();

  std::vector<torch::Tensor> x0(2);
  const std::vector<std::string> errors = test::run_ranks(2, [&](runtime::Collective& c, int rank) {
    const auto r = static_cast<std::size_t>(rank);
    train::CollectiveExpertExchange group(c);
    shards[r]->set_expert_exchange(&group);
    x0[r] = shards[r]->forward(in[r].x, in[r].t, in[r].key, in[r].global).x0_BLC;
    (x0[r] * in[r].g).sum().backward();
    shards[r]->set_expert_exchange(nullptr);
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  auto close = [](const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
    ASSERT_TRUE(a.defined() && b.defined()) << what;
    EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5)) << what << ": largest difference " << (a - b).abs().max().item<double>();
  };
  for (std::size_t r = 0; r < 2; ++r) close(x0[r], x0_ref[r], "x0 of rank " + std::to_string(r));
  const auto p0 = shards[0]->named_parameters(), p1 = shards[1]->named_parameters();
  int experts = 0, replicated = 0;
  for (const auto& p : whole->named_parameters()) {
    const std::string& name = p.key();
    if (model::is_expert_parameter(name)) {
      const int64_t half = p.value().size(0) / 2;
      close(p0[name].grad(), p.value().grad().slice(0, 0, half), name + " (shard 0)");
      close(p1[name].grad(), p.value().grad().slice(0, half, 2 * half), name + " (shard 1)");
      ++experts;
    } else if (p.value().grad().defined()) {
      close(p0[name].grad() + p1[name].grad(), p.value().grad(), name + " (summed)");
      ++replicated;
    }
  }
  EXPECT_EQ(experts, 2 * 4);  // w1, b1, w2, b2 of each of the two layers
  EXPECT_GT(replicated, 10);
}

TEST(ExpertParallel, CountsThatDoNotAddUpAreErrors) {
  runtime::Collective one;
  const std::string e = test::error_of([&] { one.all_to_all(torch::zeros({4, 2}), {4}, {3}); });
  EXPECT_NE(e.find("the counts send 3 rows of 4"), std::string::npos) << e;
  OneRank group;
  const Full full = make_full();
  const std::string uneven = test::error_of([&] {
    model::moe_ffn_expert_parallel(group, torch::zeros({1, kD}, kF64), full.shard(0, 3), torch::zeros({1, 1}, torch::kLong),
                                   torch::ones({1, 1}, kF64), kE);
  });
  EXPECT_NE(uneven.find("this rank holds 3 experts, not E/W = 4"), std::string::npos) << uneven;
}

}  // namespace
}  // namespace mds
