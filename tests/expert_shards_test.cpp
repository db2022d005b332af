// Expert parallelism in training (train/expert_shards.h): the checkpoint layout (shards gathered from
// two ranks into the whole tensors, and sliced back), the gradient mean of the shards, and clipping by
// the norm of the whole model. Two ranks are threads joined over c10d Gloo on loopback.
#include "train/expert_shards.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/model_options.h"
#include "model/state_dict.h"
#include "rank_threads.h"
#include "test_util.h"
#include "train/optim.h"

namespace mds {
namespace {

bool has_gloo() { return runtime::available_backends().find("gloo") != std::string::npos; }

model::ModelOptions small_model(int64_t shards = 1, int64_t shard = 0) {
  model::ModelOptions o = model::model_options_from_config(
      Config::load("", {"model.embed_dim=8", "model.dim=16", "model.layers=2", "model.heads=2", "model.ffn_dim=24",
                        "model.time_embed_dim=8", "moe.experts=4", "moe.top_k=2", "attention.type=dense",
                        "data.max_src_len=8", "data.max_trg_len=8"}),
      /*vocab_size=*/50);
  o.expert_shards = shards;
  o.expert_shard = shard;
  return o;
}

// A state_dict with optimizer-like entries beside it ("<name>.exp_avg"), as a checkpoint holds them.
std::map<std::string, torch::Tensor> with_moments(const model::Denoiser& m) {
  std::map<std::string, torch::Tensor> named = model::state_dict(*m);
  std::map<std::string, torch::Tensor> out = named;
  for (const auto& [name, t] : named) out[name + ".exp_avg"] = t * 2 + 1;
  out["step"] = torch::full({}, 7.0);
  return out;
}

TEST(ExpertShards, GatheredShardsAreTheWholeModelAndSliceBack) {
  if (!has_gloo()) GTEST_SKIP() << "no Gloo in this build";
  torch::manual_seed(5);
  const model::Denoiser whole(small_model());
  const std::map<std::string, torch::Tensor> expected = with_moments(whole);
  std::vector<std::map<std::string, torch::Tensor>> gathered(2), sliced(2), own(2);
  std::vector<std::size_t> sharded(2);
  // Made here, not in the ranks' threads: the default generator is one for the process.
  std::vector<model::Denoiser> shards;
  for (int64_t r = 0; r < 2; ++r) {
    torch::manual_seed(5);  // the shard draws its slice of what the whole model draws
    shards.emplace_back(small_model(2, r));
  }
  // The start-up log counts the whole model, and what this process holds apart.
  const model::ParameterCounts all = whole->parameter_counts(), half = shards[1]->parameter_counts();
  EXPECT_EQ(half.total, all.total);
  EXPECT_EQ(half.experts, all.experts);
  EXPECT_EQ(half.active, all.active);
  EXPECT_EQ(half.held, all.total - all.experts / 2);
  EXPECT_EQ(all.held, all.total);
  const auto errors = test::run_ranks(2, [&](runtime::Collective& group, int rank) {
    const auto r = static_cast<std::size_t>(rank);
    model::Denoiser& shard = shards[r];
    const train::ExpertShards experts = train::expert_shards_of(*shard, &group);
    sharded[r] = experts.params.size();
    own[r] = with_moments(shard);
    gathered[r] = own[r];
    train::gather_expert_shards(gathered[r], experts);
    sliced[r] = expected;
    train::slice_expert_shards(sliced[r], experts, "whole.safetensors");
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(sharded[0], 8u);  // w1, b1, w2, b2 of two layers
  for (std::size_t r = 0; r < 2; ++r) {
    ASSERT_EQ(gathered[r].size(), expected.size());
    for (const auto& [key, t] : expected) {
      EXPECT_TRUE(torch::equal(gathered[r].at(key), t)) << key << " gathered on rank " << r;
      EXPECT_TRUE(torch::equal(sliced[r].at(key), own[r].at(key))) << key << " sliced for rank " << r;
    }
  }
  EXPECT_EQ(gathered[0].at("block1.moe.w1.exp_avg").size(0), 4);
  EXPECT_EQ(own[1].at("block1.moe.w1.exp_avg").size(0), 2);
}

TEST(ExpertShards, ExpertsThatDoNotSplitEvenlyAreAnError) {
  train::ExpertShards experts;
  experts.shards = 3;
  experts.names = {"block0.moe.w1"};
  std::map<std::string, torch::Tensor> named = {{"block0.moe.w1.exp_avg", torch::zeros({4, 2})}};
  const std::string e = test::error_of([&] { train::slice_expert_shards(named, experts, "ck/optimizer.safetensors"); });
  EXPECT_NE(e.find("ck/optimizer.safetensors: block0.moe.w1.exp_avg has 4 experts, which 3 processes cannot share "
                   "evenly"), std::string::npos) << e;
}

TEST(ExpertShards, ShardGradientsAreMeansAndAShardNoTokenReachedGetsZeros) {
  train::ExpertShards experts;
  experts.shards = 2;
  torch::Tensor reached = torch::ones({2, 3}, torch::requires_grad()), missed = torch::ones({2, 3}, torch::requires_grad());
  reached.mutable_grad() = torch::full({2, 3}, 3.0);
  experts.params = {reached, missed};
  train::average_expert_gradients(experts);
  EXPECT_TRUE(torch::equal(reached.grad(), torch::full({2, 3}, 1.5)));
  ASSERT_TRUE(missed.grad().defined());
  EXPECT_TRUE(torch::equal(missed.grad(), torch::zeros({2, 3})));
}

// Two ranks holding the same replicated gradients and a half each of a sharded one clip as one process
// holding everything: the same norm on both ranks, the same clipped gradients.
TEST(ExpertShards, ClippingUsesTheNormOfTheWholeModel) {
  if (!has_gloo()) GTEST_SKIP() << "no Gloo in this build";
  torch::manual_seed(3);
  const torch::Tensor rep_grad = torch::randn({5}), expert_grad = torch::randn({4, 3}) * 2;
  const auto leaf = [](const torch::Tensor& grad) {
    torch::Tensor p = torch::zeros(grad.sizes(), torch::requires_grad());
    p.mutable_grad() = grad.clone();
    return p;
  };
  const torch::Tensor whole_rep = leaf(rep_grad), whole_expert = leaf(expert_grad);
  const double whole_norm = train::clip_gradients({whole_rep, whole_expert}, 1.0).item<double>();
  ASSERT_GT(whole_norm, 1.0);  // so that it clips
  std::vector<double> norms(2);
  std::vector<torch::Tensor> reps(2), shards(2);
  const auto errors = test::run_ranks(2, [&](runtime::Collective& group, int rank) {
    const auto r = static_cast<std::size_t>(rank);
    reps[r] = leaf(rep_grad);
    shards[r] = leaf(expert_grad.slice(0, 2 * rank, 2 * rank + 2));
    norms[r] = train::clip_gradients({reps[r]}, 1.0, {shards[r]},
                                     [&group](torch::Tensor& t) { group.all_reduce_sum(t); }).item<double>();
  });
  ASSERT_EQ(errors, (std::vector<std::string>{"", ""}));
  for (std::size_t r = 0; r < 2; ++r) {
    EXPECT_NEAR(norms[r], whole_norm, 1e-5 * whole_norm) << "rank " << r;
    EXPECT_TRUE(torch::allclose(reps[r].grad(), whole_rep.grad(), 1e-6, 1e-7)) << "rank " << r;
    EXPECT_TRUE(torch::allclose(shards[r].grad(), whole_expert.grad().slice(0, 2 * r, 2 * r + 2), 1e-6, 1e-7))
        << "rank " << r;
  }
}

}  // namespace
}  // namespace mds
