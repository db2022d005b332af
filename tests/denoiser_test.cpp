#include <gtest/gtest.h>

#include <torch/torch.h>

#include "core/config.h"
#include "data/batcher.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "model/layer_norm.h"
#include "core/torch_compat.h"

namespace mds {

using data::Batch;
using data::InMemorySource;
using data::PackOptions;
using data::pack_batch;
using model::BatchTensors;
using model::Denoiser;
using model::ModelOptions;
using model::ParameterCounts;
using model::model_options_from_config;
using model::to_tensors;

namespace {

// The base architecture (DiffuSeq's options: regressed x0, positions that continue, no length head);
// the learning-fast options are tests/recipe_test.cpp's.
ModelOptions tiny_options(std::vector<std::string> sets = {}) {
  std::vector<std::string> base = {"model.x0=regress", "model.target_positions=continue",
                                   "data.target_length=generate", "model.embed_dim=8", "model.dim=16", "model.layers=2", "model.heads=2",
                                   "model.ffn_dim=24", "model.time_embed_dim=8", "moe.experts=3",
                                   "moe.top_k=2", "attention.window=2", "attention.dilation=[1,2]",
                                   "data.max_src_len=24", "data.max_trg_len=8", "model.dropout=0.1"};
  base.insert(base.end(), sets.begin(), sets.end());
  return model_options_from_config(Config::load("", base), /*vocab_size=*/50);
}

// A batch of three examples of different lengths, with source padding.
Batch make_batch(int src_a = 5, int src_b = 2, int src_c = 9) {
  InMemorySource source;
  auto seq = [](int n, int base) {
    std::vector<int32_t> v;
    for (int i = 0; i < n; ++i) v.push_back(base + i % 7);
    return v;
  };
  source.add(seq(src_a, 10), seq(3, 30));
  source.add(seq(src_b, 20), seq(5, 31));
  source.add(seq(src_c, 12), seq(2, 40));
  PackOptions pack;
  pack.max_src_len = 24;
  pack.max_trg_len = 8;
  return pack_batch(source, {0, 1, 2}, pack);
}

struct Inputs {
  torch::Tensor x_BLC, t_B, key_BL, global_BL;
};

Inputs inputs_for(Denoiser& model, const Batch& batch, torch::ScalarType dtype) {
  BatchTensors t = to_tensors(batch, torch::kCPU);
  torch::NoGradGuard no_grad;
  Inputs in;
  in.x_BLC = model->embed(t.ids_BL).to(dtype) + 0.3 * torch::randn({batch.batch_size, batch.length,
                                                                    model->options().embed_dim}, dtype);
  in.t_B = torch::tensor({10.5, 400.0, 999.5}, torch::kFloat).narrow(0, 0, batch.batch_size);
  in.key_BL = t.key_mask_BL;
  in.global_BL = t.global_mask_BL;
  return in;
}

torch::Tensor run(Denoiser& model, const Inputs& in) {
  return model->forward(in.x_BLC, in.t_B, in.key_BL, in.global_BL, /*with_logits=*/true).x0_BLC;
}

TEST(Denoiser, SparseWithWideWindowEqualsDense) {
  torch::manual_seed(1);
  // d = 1: with dilation 2 even a huge window sees only keys of the same parity.
  ModelOptions o = tiny_options({"attention.window=64", "attention.dilation=1"});
  Denoiser model(o);
  model->to(torch::kDouble);
  model->eval();
  Batch batch = make_batch();
  Inputs in = inputs_for(model, batch, torch::kDouble);
  torch::Tensor sparse = run(model, in);
  for (auto& block : model->blocks()) block->attention()->set_sparse(false);
  torch::Tensor dense = run(model, in);
  EXPECT_LT((sparse - dense).abs().max().item<double>(), 1e-12);
  // The same weights with a narrow window give something else (the check above can fail).
  Denoiser narrow(tiny_options({"attention.window=1", "attention.dilation=1"}));
  narrow->to(torch::kDouble);
  narrow->eval();
  {
    torch::NoGradGuard g;
    auto src = model->named_parameters();
    for (auto& p : narrow->named_parameters()) p.value().copy_(src[p.key()]);
  }
  EXPECT_GT((run(narrow, in) - dense).abs().max().item<double>(), 1e-6);
}

TEST(Denoiser, DeterministicInEvalNotInTraining) {
  torch::manual_seed(2);
  Denoiser model(tiny_options());
  Batch batch = make_batch();
  Inputs in = inputs_for(model, batch, torch::kFloat);
  model->eval();
  EXPECT_TRUE(torch::equal(run(model, in), run(model, in)));
  model->train();
  EXPECT_FALSE(torch::equal(run(model, in), run(model, in)));  // dropout is on
}

TEST(Denoiser, PaddedSourceTokensChangeNothing) {
  torch::manual_seed(3);
  Denoiser model(tiny_options());
  model->to(torch::kDouble);
  model->eval();
  Batch batch = make_batch();
  Inputs in = inputs_for(model, batch, torch::kDouble);
  torch::Tensor before = run(model, in);
  // Overwrite the inputs at every source-padding position with something else entirely.
  auto pad_BL = in.key_BL.logical_not();
  ASSERT_GT(pad_BL.sum().item<int64_t>(), 0);
  Inputs changed = in;
  changed.x_BLC = torch::where(pad_BL.unsqueeze(-1), torch::randn_like(in.x_BLC) * 5, in.x_BLC);
  torch::Tensor after = run(model, changed);
  auto real = in.key_BL.unsqueeze(-1).expand_as(before);
  EXPECT_LT((before - after).abs().masked_select(real).max().item<double>(), 1e-12);
  // Changing a real source token does change the output (the check above can fail).
  Inputs real_change = in;
  real_change.x_BLC = in.x_BLC.clone();
  real_change.x_BLC.select(0, 0).select(0, 1).add_(1.0);
  EXPECT_GT((run(model, real_change) - before).abs().max().item<double>(), 1e-6);
}

TEST(Denoiser, OddLengthsAndShapes) {
  torch::manual_seed(4);
  Denoiser model(tiny_options());
  model->eval();
  for (int src : {0, 1, 6, 13}) {
    Batch batch = make_batch(src, src, src);
    Inputs in = inputs_for(model, batch, torch::kFloat);
    auto out = model->forward(in.x_BLC, in.t_B, in.key_BL, in.global_BL, true);
    EXPECT_EQ(out.x0_BLC.sizes(), (torch::IntArrayRef{3, batch.length, 8}));
    EXPECT_EQ(out.logits_BLV.sizes(), (torch::IntArrayRef{3, batch.length, 50}));
    EXPECT_TRUE(torch::isfinite(out.logits_BLV).all().item<bool>());
    ASSERT_EQ(out.tokens_per_expert.size(), 2u);
    // Dropless: every (token, slot) lands somewhere.
    EXPECT_EQ(out.tokens_per_expert[0].sum().item<int64_t>(), 3 * batch.length * 2);
  }
}

TEST(Denoiser, GradientsReachEveryParameterAndLossesAreReported) {
  torch::manual_seed(5);
  Denoiser model(tiny_options({"attention.global_projections=true"}));
  model->train();
  Batch batch = make_batch();
  Inputs in = inputs_for(model, batch, torch::kFloat);
  auto out = model->forward(in.x_BLC, in.t_B, in.key_BL, in.global_BL, true);
  EXPECT_GT(out.aux_loss.item<double>(), 0.5);  // ~1 at balanced routing
  EXPECT_GE(out.z_loss.item<double>(), 0.0);
  auto loss = out.x0_BLC.pow(2).mean() + out.logits_BLV.logsumexp(-1).mean() + out.moe_loss;
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    if (p.key() == "absorbing") continue;  // used by the diffusion process, not the forward pass
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

TEST(Denoiser, ParameterCounts) {
  ModelOptions o = tiny_options({"moe.experts=1", "moe.top_k=1"});
  Denoiser model(o);
  // Hand count: C=8, D=16, V=50, P=24+8+2=34, T=8, F=24, 2 layers.
  const int64_t C = 8, D = 16, V = 50, P = 34, T = 8, F = 24;
  const int64_t embeddings = V * C + V + P * D;
  const int64_t absorbing = C;
  const int64_t up = C * D + D + D * D + D, down = D * D + D + D * C + C;
  const int64_t time = T * 4 * T + 4 * T + 4 * T * D + D;
  const int64_t norms = 2 * D + 2 * D;  // embedding LN + final LN
  const int64_t attention = D * 3 * D + 3 * D + D * D + D;
  const int64_t ffn = D * F + F + F * D + D;  // one expert: a plain FFN, no router
  const int64_t block = 2 * 2 * D + attention + ffn;
  const auto c = model->parameter_counts();
  EXPECT_EQ(c.total, embeddings + absorbing + up + down + time + norms + 2 * block);
  EXPECT_EQ(c.active, c.total);
  EXPECT_EQ(c.embedding, embeddings);

  Denoiser moe(tiny_options({"moe.experts=4", "moe.top_k=2"}));
  const auto m = moe->parameter_counts();
  EXPECT_EQ(m.experts, 2 * 4 * (D * F + F + F * D + D));
  EXPECT_EQ(m.total - m.active, 2 * 2 * (D * F + F + F * D + D));  // 2 of 4 experts unused per token
  EXPECT_NE(moe->describe().find("active per token"), std::string::npos);
}

}  // namespace
}  // namespace mds

// model.bf16_residual's norms: a bf16 stream is normalised in bf16 (statistics in float32) even under
// autocast, which would run the norm in float32; a float32 stream goes through the module as before.
TEST(LayerNormAsInput, KeepsTheDtypeOfItsInput) {
  torch::manual_seed(5);
  torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({48}).eps(1e-12));
  {
    torch::NoGradGuard no_grad;
    ln->weight.uniform_(0.5, 1.5);
    ln->bias.uniform_(-0.5, 0.5);
  }
  const torch::Tensor x = torch::randn({3, 7, 48}) * 3 + 1;
  EXPECT_TRUE(torch::equal(mds::model::layer_norm_as_input(ln, x), ln->forward(x)));
  const torch::Tensor ref = ln->forward(x.to(torch::kBFloat16).to(torch::kFloat));
  torch::Tensor y;
  {
    mds::compat::AutocastScope bf16(torch::kCPU, true, torch::kBFloat16);
    y = mds::model::layer_norm_as_input(ln, x.to(torch::kBFloat16));
  }
  ASSERT_EQ(y.scalar_type(), torch::kBFloat16);
  // Within bf16's rounding of the output (2^-8 relative, |y| up to about 4).
  EXPECT_LT((y.to(torch::kFloat) - ref).abs().max().item<double>(), 0.04);
  // The gradient reaches the float32 weights through the cast.
  y.to(torch::kFloat).sum().backward();
  ASSERT_TRUE(ln->weight.grad().defined());
  EXPECT_EQ(ln->weight.grad().scalar_type(), torch::kFloat);
}
