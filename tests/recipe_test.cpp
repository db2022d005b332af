// The learning-fast options of the model, the loss and the generator (config keys model.x0,
// model.self_condition, model.embed_norm, model.target_positions, data.target_length,
// diffusion.noise_factor), each checked for the values it must produce, not just that it runs.
//
// Dimensions: B batch, L length, C embedding dim, D model dim, V vocabulary, T length classes, N rows.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "data/batcher.h"
#include "diffusion/loss.h"
#include "diffusion/schedule.h"
#include "infer/generator.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "runtime/runtime.h"

namespace mds {
namespace {

using data::Batch;
using data::InMemorySource;
using data::PackOptions;
using model::BatchTensors;
using model::Denoiser;
using model::DenoiserInputs;

constexpr int64_t kVocab = 40;

// DiffuSeq's behaviour (every option of this file off), so that each test turns on only its own.
std::vector<std::string> tiny(std::vector<std::string> extra = {}) {
  std::vector<std::string> sets = {"model.x0=regress", "loss.x0_ce_weight=0", "model.target_positions=continue",
                                   "data.target_length=generate", "model.embed_dim=8", "model.dim=16", "model.layers=2", "model.heads=2",
                                   "model.ffn_dim=24", "model.time_embed_dim=8", "moe.experts=1",
                                   "attention.type=dense", "data.max_src_len=12", "data.max_trg_len=6",
                                   "model.dropout=0"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return sets;
}

Config config_of(std::vector<std::string> extra = {}) { return Config::load("", tiny(std::move(extra))); }

Denoiser make_model(const Config& c, uint64_t seed = 5) {
  torch::manual_seed(seed);
  Denoiser m(model::model_options_from_config(c, kVocab));
  m->train();
  return m;
}

// Three examples: sources of 4, 2 and 6 tokens, targets of 3, 1 and 4.
Batch make_batch(const Config& c) {
  InMemorySource source;
  source.add({10, 11, 12, 13}, {20, 21, 22});
  source.add({14, 15}, {23});
  source.add({16, 17, 18, 19, 24, 25}, {26, 27, 28, 29});
  return data::pack_batch(source, {0, 1, 2}, data::pack_options_from_config(c));
}

DenoiserInputs inputs_of(Denoiser& m, const BatchTensors& bt) {
  DenoiserInputs in;
  in.x_t_BLC = m->embed(bt.ids_BL).detach() + 0.5 * torch::randn({bt.ids_BL.size(0), bt.ids_BL.size(1), 8});
  in.t_B = torch::tensor({100.0f, 500.0f, 900.0f});
  in.key_mask_BL = bt.key_mask_BL;
  in.global_mask_BL = bt.global_mask_BL;
  in.trg_mask_BL = bt.trg_mask_BL;
  return in;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// ----------------------------------------------------------------------------- self-conditioning

TEST(SelfConditioning, StartsAsTheModelWithoutIt) {
  const Config c = config_of({"model.self_condition=true"});
  Denoiser m = make_model(c);
  const BatchTensors bt = model::to_tensors(make_batch(c), torch::kCPU);
  torch::NoGradGuard no_grad;
  DenoiserInputs in = inputs_of(m, bt);
  const torch::Tensor plain = m->forward(in).x0_BLC;
  in.self_cond_BLC = torch::randn_like(in.x_t_BLC);
  // The zero-initialised projection: the input has no effect until training moves it.
  EXPECT_EQ(max_diff(m->forward(in).x0_BLC, plain), 0.0);
  for (auto& p : m->named_parameters())
    if (p.key().rfind("self_cond.", 0) == 0) p.value().normal_(0, 0.5);
  EXPECT_GT(max_diff(m->forward(in).x0_BLC, plain), 1e-3);
  // A model without the option has no such parameters, and draws the same initial weights.
  Denoiser without = make_model(config_of());
  for (const auto& p : without->named_parameters()) {
    EXPECT_EQ(p.key().find("self_cond"), std::string::npos);
    EXPECT_TRUE(torch::equal(p.value(), m->named_parameters()[p.key()])) << p.key();
  }
}

// With self_condition_prob = 1 every step first estimates x0 without gradient and feeds it back: the
// loss equals that computed by hand from the same draws.
TEST(SelfConditioning, TrainingFeedsTheFirstEstimateBack) {
  const Config c = config_of({"model.self_condition=true", "train.self_condition_prob=1"});
  Denoiser m = make_model(c);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m->named_parameters())
      if (p.key().rfind("self_cond.", 0) == 0) p.value().normal_(0, 0.5);
  }
  const BatchTensors bt = model::to_tensors(make_batch(c), torch::kCPU);
  const diffusion::NoiseSchedule s = diffusion::NoiseSchedule::from_config(c);
  const diffusion::LossOptions o = diffusion::loss_options_from_config(c);
  ASSERT_EQ(o.self_condition_prob, 1.0);
  const torch::Tensor t_B = torch::tensor({7, 800, 1999}, torch::kLong), w_B = torch::ones({3});

  at::Generator gen = at::detail::createCPUGenerator(11);
  const diffusion::LossTerms terms = diffusion::diffusion_loss(m, bt, s, t_B, w_B, o, gen);

  // By hand: the same noise, the coin, then the two passes.
  at::Generator g2 = at::detail::createCPUGenerator(11);
  torch::NoGradGuard no_grad;
  const torch::Tensor emb = m->embed(bt.ids_BL);
  const diffusion::Noised n = diffusion::noise_batch(s, emb, t_B, bt.trg_mask_BL, m->absorbing(), o.forward, g2);
  const double coin = at::rand({1}, g2).item<double>();
  EXPECT_LT(coin, 1.0);
  DenoiserInputs in;
  in.x_t_BLC = n.x_t_BLC;
  in.t_B = t_B.to(torch::kFloat) * (1000.0 / 2000.0);
  in.key_mask_BL = bt.key_mask_BL;
  in.global_mask_BL = bt.global_mask_BL;
  in.trg_mask_BL = bt.trg_mask_BL;
  const torch::Tensor first = m->forward(in).x0_BLC;
  in.self_cond_BLC = torch::where(bt.trg_mask_BL.unsqueeze(-1), first, n.x_t_BLC);
  const torch::Tensor second = m->forward(in).x0_BLC;
  const torch::Tensor target = torch::where((t_B == 0).view({3, 1, 1}), emb, n.x0_BLC);
  const double mse = diffusion::mse_loss_B(second, target, bt.trg_mask_BL).mean().item<double>();
  EXPECT_NEAR(terms.mse.item<double>(), mse, 1e-6);
  // And differs from a single pass (the fed-back estimate mattered).
  const torch::Tensor single = diffusion::mse_loss_B(first, target, bt.trg_mask_BL).mean();
  EXPECT_GT(std::abs(single.item<double>() - mse), 1e-6);
}

// Generation: each model call gets the previous call's estimate, anchored; the first gets none.
TEST(SelfConditioning, TheSamplerFeedsThePreviousEstimate) {
  const Config c = config_of({"model.self_condition=true"});
  Denoiser m = make_model(c);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m->named_parameters())
      if (p.key().rfind("self_cond.", 0) == 0) p.value().normal_(0, 0.5);
  }
  m->eval();
  const BatchTensors bt = model::to_tensors(make_batch(c), torch::kCPU);
  torch::NoGradGuard no_grad;
  const torch::Tensor anchor = m->embed(bt.ids_BL);
  const diffusion::X0Predictor predict = infer::x0_predictor(m, bt, anchor, runtime::Runtime{});
  const torch::Tensor x1 = anchor + torch::randn_like(anchor), x2 = anchor + 0.3 * torch::randn_like(anchor);
  const torch::Tensor t1 = torch::full({3}, 900.0f), t2 = torch::full({3}, 400.0f);
  const torch::Tensor out1 = predict(x1, t1);
  const torch::Tensor out2 = predict(x2, t2);

  DenoiserInputs in;
  in.key_mask_BL = bt.key_mask_BL;
  in.global_mask_BL = bt.global_mask_BL;
  in.trg_mask_BL = bt.trg_mask_BL;
  in.x_t_BLC = x1;
  in.t_B = t1;
  EXPECT_EQ(max_diff(out1, m->forward(in).x0_BLC), 0.0);  // the first call: no estimate yet
  in.x_t_BLC = x2;
  in.t_B = t2;
  in.self_cond_BLC = torch::where(bt.trg_mask_BL.unsqueeze(-1), out1, anchor);
  EXPECT_EQ(max_diff(out2, m->forward(in).x0_BLC), 0.0);
  in.self_cond_BLC = torch::Tensor();
  EXPECT_GT(max_diff(out2, m->forward(in).x0_BLC), 1e-4);
}

// ----------------------------------------------------------------------------- softmax x0

TEST(SoftmaxX0, IsTheExpectedEmbeddingOnTargetPositions) {
  const Config c = config_of({"model.x0=softmax", "loss.x0_ce_weight=1"});
  Denoiser m = make_model(c);
  const BatchTensors bt = model::to_tensors(make_batch(c), torch::kCPU);
  torch::NoGradGuard no_grad;
  const DenoiserInputs in = inputs_of(m, bt);
  const model::DenoiserOutput out = m->forward(in, /*with_logits=*/true);
  const int64_t N = bt.trg_mask_BL.sum().item<int64_t>();
  ASSERT_EQ(out.x0_logits_NV.sizes(), (torch::IntArrayRef{N, kVocab}));
  const torch::Tensor rows = diffusion::chosen_rows(out.logits_BLV, bt.trg_mask_BL);
  EXPECT_LT(max_diff(out.x0_logits_NV, rows), 1e-6);  // the tied head on z
  const torch::Tensor expected_NC = torch::softmax(rows, -1).matmul(m->embedding_weight());
  EXPECT_LT(max_diff(diffusion::chosen_rows(out.x0_BLC, bt.trg_mask_BL), expected_NC), 1e-5);
  // The x0 cross-entropy is that of these logits against the target tokens.
  const diffusion::LossOptions o = diffusion::loss_options_from_config(c);
  at::Generator gen = at::detail::createCPUGenerator(3);
  const diffusion::LossTerms t =
      diffusion::diffusion_loss(m, bt, diffusion::NoiseSchedule::from_config(c), torch::tensor({5, 50, 500}),
                                torch::ones({3}), o, gen);
  EXPECT_GT(t.x0_ce.item<double>(), 0.0);
  EXPECT_LT(t.x0_ce.item<double>(), std::log(static_cast<double>(kVocab)) + 3.0);
}

// The copy head: with the gate shut (g = 0) and a flat attention, the distribution of a target
// position is the frequency of each token among its row's source positions (BOS and SEP included).
TEST(CopyHead, CopiesTheSourceTokensItAttendsTo) {
  const Config c = config_of({"model.x0=softmax", "model.copy_head=true"});
  Denoiser m = make_model(c);
  {
    torch::NoGradGuard no_grad;
    auto params = m->named_parameters();
    params["copy_q.weight"].zero_();
    params["copy_q.bias"].zero_();
    params["copy_gate.weight"].zero_();
    params["copy_gate.bias"].fill_(-40.0);  // sigmoid(-40): the vocabulary's share is 4e-18
  }
  const Batch batch = make_batch(c);
  const BatchTensors bt = model::to_tensors(batch, torch::kCPU);
  torch::NoGradGuard no_grad;
  DenoiserInputs in = inputs_of(m, bt);
  in.ids_BL = bt.ids_BL;
  const model::DenoiserOutput out = m->forward(in);
  const torch::Tensor p_NV = out.x0_logits_NV.exp();
  const int64_t L = batch.length;
  int64_t n = 0;
  for (int64_t b = 0; b < batch.batch_size; ++b) {
    std::vector<double> expected(kVocab, 0.0);
    double sources = 0;
    for (int64_t p = 0; p < L; ++p) {
      const auto i = static_cast<std::size_t>(b * L + p);
      if (batch.key_mask[i] && !batch.trg_mask[i]) {
        expected[static_cast<std::size_t>(batch.ids[i])] += 1.0;
        sources += 1.0;
      }
    }
    for (int64_t p = 0; p < L; ++p) {
      if (!batch.trg_mask[static_cast<std::size_t>(b * L + p)]) continue;
      for (int64_t v = 0; v < kVocab; ++v)
        EXPECT_NEAR(p_NV[n][v].item<double>(), expected[static_cast<std::size_t>(v)] / sources, 1e-6)
            << "row " << b << " position " << p << " token " << v;
      ++n;
    }
  }
  EXPECT_EQ(n, p_NV.size(0));
  // x0 is the expected embedding under that distribution.
  EXPECT_LT(max_diff(diffusion::chosen_rows(out.x0_BLC, bt.trg_mask_BL), p_NV.matmul(m->embedding_weight())), 1e-5);
  // The head needs the softmax x0.
  EXPECT_THROW(model::model_options_from_config(config_of({"model.copy_head=true"}), kVocab), Error);
}

// Scoring only the target rows against the source keys (trg_start) gives the distribution of the
// full L x L scoring, with trained-looking (random, not flat) copy weights and an open gate.
TEST(CopyHead, TargetRowsAloneGiveTheSameDistribution) {
  const Config c = config_of({"model.x0=softmax", "model.copy_head=true"});
  Denoiser m = make_model(c, 11);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m->named_parameters())
      if (p.key().rfind("copy_", 0) == 0) p.value().normal_(0.0, 0.5);
  }
  const Batch batch = make_batch(c);
  const BatchTensors bt = model::to_tensors(batch, torch::kCPU);
  torch::NoGradGuard no_grad;
  DenoiserInputs in = inputs_of(m, bt);
  in.ids_BL = bt.ids_BL;
  const torch::Tensor full_NV = m->forward(in).x0_logits_NV.exp();
  in.trg_start = batch.src_region + 2;
  const torch::Tensor rows_NV = m->forward(in).x0_logits_NV.exp();
  ASSERT_EQ(full_NV.sizes(), rows_NV.sizes());
  EXPECT_LT(max_diff(full_NV, rows_NV), 1e-6);
  // Each row is still a distribution.
  EXPECT_LT(max_diff(rows_NV.sum(1), torch::ones({rows_NV.size(0)})), 1e-5);
}

// ----------------------------------------------------------------------------- embeddings, positions

TEST(EmbedNorm, RowsHaveTheConfiguredRms) {
  const Config c = config_of({"model.embed_norm=l2", "model.embed_scale=0.5"});
  Denoiser m = make_model(c);
  torch::NoGradGuard no_grad;
  const torch::Tensor rms_V = m->embedding_weight().pow(2).mean(1).sqrt();
  EXPECT_LT(max_diff(rms_V, torch::full_like(rms_V, 0.5)), 1e-5);
  const torch::Tensor ids = torch::tensor({{3, 7}}, torch::kLong);
  EXPECT_LT(max_diff(m->embed(ids)[0][1], m->embedding_weight()[7]), 1e-7);
  EXPECT_LT(max_diff(m->logits(m->embed(ids)), torch::linear(m->embed(ids), m->embedding_weight(),
                                                              m->named_parameters()["lm_bias"])), 1e-6);
}

TEST(RestartPositions, TargetTokenJSharesSourceTokenJsId) {
  const torch::Tensor trg = torch::tensor({{0, 0, 0, 0, 1, 1, 1}, {0, 0, 0, 1, 1, 1, 1}}, torch::kBool);
  const torch::Tensor ids = model::restart_position_ids(trg);
  const torch::Tensor expected = torch::tensor({{0, 1, 2, 3, 1, 2, 3}, {0, 1, 2, 1, 2, 3, 4}}, torch::kLong);
  EXPECT_TRUE(torch::equal(ids, expected)) << ids;
  // The model with the option reads these ids (and the segment embedding): its outputs differ from the
  // same weights' without it.
  const Config c = config_of({"model.target_positions=restart"});
  Denoiser with = make_model(c), without = make_model(config_of());  // same seed: same shared weights
  const BatchTensors bt = model::to_tensors(make_batch(c), torch::kCPU);
  torch::NoGradGuard no_grad;
  const DenoiserInputs in = inputs_of(without, bt);
  EXPECT_GT(max_diff(with->forward(in).x0_BLC, without->forward(in).x0_BLC), 1e-4);
}

// ----------------------------------------------------------------------------- length head

TEST(LengthHead, TrainingMasksTheTargetPaddingAndLearnsTheLength) {
  const Config c = config_of({"data.target_length=predict", "data.trg_pad=max"});
  const Batch batch = make_batch(c);
  // Row 1: source of 2, target of 1 token + EOS, then padding masked out.
  const int64_t L = batch.length, S = batch.src_region;
  for (int64_t p = S + 2; p < L; ++p) {
    const bool kept = p <= S + 2 + 1;  // the token and the EOS
    EXPECT_EQ(batch.trg_mask[static_cast<std::size_t>(L + p)], kept ? 1 : 0) << p;
    EXPECT_EQ(batch.key_mask[static_cast<std::size_t>(L + p)], kept ? 1 : 0) << p;
  }
  Denoiser m = make_model(c);
  ASSERT_TRUE(m->has_length_head());
  const BatchTensors bt = model::to_tensors(batch, torch::kCPU);
  const diffusion::LossOptions o = diffusion::loss_options_from_config(c);
  ASSERT_EQ(o.length_weight, 0.1);
  at::Generator gen = at::detail::createCPUGenerator(3);
  const diffusion::LossTerms t = diffusion::diffusion_loss(m, bt, diffusion::NoiseSchedule::from_config(c),
                                                           torch::tensor({5, 50, 500}), torch::ones({3}), o, gen);
  torch::NoGradGuard no_grad;
  const torch::Tensor logits_BT = m->length_logits(m->embed(bt.ids_BL), bt.key_mask_BL & bt.trg_mask_BL.logical_not());
  ASSERT_EQ(logits_BT.sizes(), (torch::IntArrayRef{3, 6}));  // 0 .. max_trg_len - 1 tokens
  const double ce = torch::nn::functional::cross_entropy(logits_BT, torch::tensor({3, 1, 4})).item<double>();
  EXPECT_NEAR(t.length.item<double>(), ce, 1e-6);
}

TEST(LengthHead, GenerationDenoisesExactlyThePredictedPositions) {
  const Config c = config_of({"data.target_length=predict"});
  Denoiser m = make_model(c);
  {
    // Force the head to predict 2 tokens for every source.
    torch::NoGradGuard no_grad;
    auto params = m->named_parameters();
    params["length_fc2.weight"].zero_();
    params["length_fc2.bias"].fill_(-10.0);
    params["length_fc2.bias"][2] = 10.0;
  }
  m->eval();
  infer::TextGenerator generator(c, m, runtime::Runtime{});
  generator.options().sampler.steps = 3;
  InMemorySource source;
  source.add({10, 11, 12}, {});
  source.add({13, 14, 15, 16, 17}, {});
  const Batch batch = data::pack_batch(source, {0, 1}, generator.pack_options());
  ASSERT_EQ(batch.trg_region, 6);
  const BatchTensors bt = model::to_tensors(batch, torch::kCPU);
  EXPECT_TRUE(torch::equal(generator.predict_lengths(bt), torch::tensor({2, 2}, torch::kLong)));

  const BatchTensors cut = model::limit_target_region(bt, torch::tensor({3, 1}, torch::kLong));
  const int64_t first = batch.src_region + 2;
  EXPECT_EQ(cut.ids_BL.size(1), first + 3);  // the longest kept row
  EXPECT_EQ(cut.trg_mask_BL[0].sum().item<int64_t>(), 3);
  EXPECT_EQ(cut.trg_mask_BL[1].sum().item<int64_t>(), 1);
  EXPECT_FALSE(cut.key_mask_BL[1][first + 1].item<bool>());
  EXPECT_EQ(cut.ids_BL[1][first + 2].item<int64_t>(), data::SpecialTokens::pad);
  EXPECT_TRUE(cut.key_mask_BL[0][first + 2].item<bool>());
  EXPECT_TRUE(torch::equal(cut.trg_rows_N, cut.trg_mask_BL.reshape({-1}).nonzero().squeeze(1)));
  EXPECT_TRUE(torch::equal(cut.key_rows_N, cut.key_mask_BL.reshape({-1}).nonzero().squeeze(1)));
  EXPECT_EQ(cut.facts.key_padding, 1);

  // Each row is read as 1 or 2 tokens (the predicted 2, or fewer where the model puts its EOS, but
  // never none), none of them special, whatever this untrained model's rounding prefers.
  const infer::GeneratedBatch out = generator.generate_ids(batch, at::detail::createCPUGenerator(1));
  for (const auto& row : out.tokens) {
    EXPECT_GE(row.size(), 1u);
    EXPECT_LE(row.size(), 2u);
    for (int32_t id : row) EXPECT_GE(id, data::SpecialTokens::count);
  }
  // The predicted length is the median of the head's distribution over 1..T-1 tokens (an empty
  // target, which training never sees, is never chosen): here 4, where the argmax would say 1.
  {
    torch::NoGradGuard no_grad;
    auto params = m->named_parameters();
    params["length_fc2.bias"].fill_(-30.0);
    params["length_fc2.bias"][0] = 10.0;  // no weight: an empty target is never read
    params["length_fc2.bias"][1] = 1.0;   // p(1) = 0.4
    params["length_fc2.bias"][4] = std::log(0.35 / 0.4 * std::exp(1.0));  // p(4) = 0.35
    params["length_fc2.bias"][5] = std::log(0.25 / 0.4 * std::exp(1.0));  // p(5) = 0.25
  }
  EXPECT_TRUE(torch::equal(generator.predict_lengths(bt), torch::tensor({4, 4}, torch::kLong)));
}

// sample.length = "source": each row gets its source's length in tokens (at most the region less its
// EOS), whatever the length head says, and a model without a head gets lengths too.
TEST(SampleLength, SourceGivesEachRowItsSourceLength) {
  for (const char* target_length : {"data.target_length=predict", "data.target_length=generate"}) {
    SCOPED_TRACE(target_length);
    const Config c = config_of({target_length, "sample.length=source"});
    Denoiser m = make_model(c);
    m->eval();
    infer::TextGenerator generator(c, m, runtime::Runtime{});
    generator.options().sampler.steps = 2;
    InMemorySource source;
    source.add({10, 11, 12}, {});
    source.add({13, 14, 15, 16, 17}, {});
    source.add({18}, {});
    data::PackOptions pack = generator.pack_options();
    pack.max_trg_len = 5;  // the 5-token source is cut to 4 tokens and the EOS
    const Batch batch = data::pack_batch(source, {0, 1, 2}, pack);
    const BatchTensors bt = model::to_tensors(batch, torch::kCPU);
    EXPECT_TRUE(torch::equal(generator.output_lengths(batch, bt), torch::tensor({3, 4, 1}, torch::kLong)));
    // Read up to the model's EOS but never empty and never longer.
    const infer::GeneratedBatch out = generator.generate_ids(batch, at::detail::createCPUGenerator(1));
    const std::size_t most[] = {3, 4, 1};
    for (std::size_t b = 0; b < out.tokens.size(); ++b) {
      EXPECT_GE(out.tokens[b].size(), 1u);
      EXPECT_LE(out.tokens[b].size(), most[b]);
    }
    generator.options().length = "predict";
    EXPECT_EQ(generator.output_lengths(batch, bt).defined(), std::string(target_length).find("predict") != std::string::npos);
  }
}

// An output of decided length reads as text: a row whose every id is blank (ids 1 and 3 here) gets the
// best id that is not at its first position; any other row is left as it is.
TEST(SampleLength, ADecidedOutputIsNeverBlankText) {
  const std::vector<uint8_t> blank = {0, 1, 0, 1, 0};
  const torch::Tensor logits_V = torch::tensor({0.5f, 9.0f, 2.0f, 7.0f, 1.0f});  // blank ids score highest
  std::vector<int32_t> row = {3, 1, 1};
  EXPECT_TRUE(infer::reads_blank(row, blank));
  infer::ensure_text(row, logits_V, blank);
  EXPECT_EQ(row, (std::vector<int32_t>{2, 1, 1}));
  EXPECT_FALSE(infer::reads_blank(row, blank));
  for (std::vector<int32_t> kept : {std::vector<int32_t>{1, 4}, std::vector<int32_t>{0}, std::vector<int32_t>{}}) {
    const std::vector<int32_t> before = kept;
    infer::ensure_text(kept, logits_V, blank);
    EXPECT_EQ(kept, before);
  }
  std::vector<int32_t> one = {1};
  EXPECT_THROW(infer::ensure_text(one, torch::zeros({4}), blank), Error);  // 4 logits, 5 flags
}

// sample.start_time < 1 starts from the source: target position j holds source token j's embedding
// where the row has one, m elsewhere.
TEST(StartFromSource, TargetPositionJHoldsSourceTokenJ) {
  const Config c = config_of({"data.target_length=predict"});
  Denoiser m = make_model(c);
  infer::TextGenerator generator(c, m, runtime::Runtime{});
  InMemorySource source;
  source.add({10, 11, 12}, {});
  source.add({13, 14, 15, 16, 17}, {});
  const Batch batch = data::pack_batch(source, {0, 1}, generator.pack_options());
  const BatchTensors bt = model::to_tensors(batch, torch::kCPU);
  torch::NoGradGuard no_grad;
  const torch::Tensor anchor = m->embed(bt.ids_BL);
  ASSERT_TRUE(m->absorbing().defined());
  const torch::Tensor x0 = model::source_aligned_x0(bt, anchor, m->absorbing());
  const int64_t first = batch.src_region + 2, T = batch.trg_region;
  ASSERT_EQ(T, 6);
  const std::vector<std::vector<int64_t>> expected = {{10, 11, 12, -1, -1, -1}, {13, 14, 15, 16, 17, -1}};
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t j = 0; j < T; ++j) {
      const int64_t id = expected[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)];
      const torch::Tensor want = id < 0 ? m->absorbing() : m->embedding_weight()[id];
      EXPECT_LT(max_diff(x0[b][first + j], want), 1e-7) << b << " " << j;
    }
  // Generation from there gives one row per source.
  generator.options().sampler.steps = 3;
  generator.options().sampler.start_time = 0.5;
  EXPECT_EQ(generator.generate_ids(batch, at::detail::createCPUGenerator(1)).tokens.size(), 2u);
  // A start of 0, or a start below 1 with a sampler other than DPM-Solver++, is refused by name.
  infer::GenerateOptions o = generator.options();
  o.sampler.start_time = 0.0;
  EXPECT_THROW(infer::check_generate_options(o), Error);
  o.sampler.start_time = 0.5;
  infer::check_generate_options(o);
  o.sampler.sampler = "ddim";
  try {
    infer::check_generate_options(o);
    ADD_FAILURE() << "ddim with a start below 1 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample.start_time"), std::string::npos) << e.what();
  }
}

// On a canvas (data.target_canvas = "source", two slots) target position j holds source token j / 3
// where j is a multiple of 3, PAD's embedding in the slots after it, m after the row's canvas; and
// generation reads every place of the canvas.
TEST(StartFromSource, OnACanvasEachSourceWordIsFollowedByItsEmptySlots) {
  const Config c = config_of({"data.target_length=predict", "data.target_canvas=source", "data.canvas_slots=2",
                              "data.max_trg_len=37"});
  Denoiser m = make_model(c);
  infer::TextGenerator generator(c, m, runtime::Runtime{});
  InMemorySource source;
  source.add({10, 11}, {});
  source.add({13, 14, 15}, {});
  const Batch batch = data::pack_batch(source, {0, 1}, generator.pack_options());
  const BatchTensors bt = model::to_tensors(batch, torch::kCPU);
  torch::NoGradGuard no_grad;
  const torch::Tensor anchor = m->embed(bt.ids_BL);
  const torch::Tensor x0 = model::source_aligned_x0(bt, anchor, m->absorbing(), 3, m->canvas_blank(3));
  const int64_t first = batch.src_region + 2;
  const int64_t P = data::SpecialTokens::pad;
  const std::vector<std::vector<int64_t>> expected = {{10, P, P, 11, P, P, -1, -1, -1, -1},
                                                      {13, P, P, 14, P, P, 15, P, P, -1}};
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t j = 0; j < 10; ++j) {
      const int64_t id = expected[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)];
      const torch::Tensor want = id < 0 ? m->absorbing() : m->embedding_weight()[id];
      EXPECT_LT(max_diff(x0[b][first + j], want), 1e-7) << b << " " << j;
    }
  // The generator starts from the same canvas and gives each row its canvas's places.
  generator.options().sampler.steps = 2;
  generator.options().sampler.start_time = 0.5;
  const auto generated = generator.generate_ids(batch, at::detail::createCPUGenerator(1));
  ASSERT_EQ(generated.tokens.size(), 2u);
  for (std::size_t b = 0; b < 2; ++b) {
    EXPECT_GE(generated.tokens[b].size(), 1u);
    EXPECT_LE(generated.tokens[b].size(), b == 0 ? 6u : 9u);
    for (int32_t id : generated.tokens[b]) EXPECT_GE(id, data::SpecialTokens::count);
  }
  // A row marked compact (a rewrite of data.canvas_rewrite_compact) starts as the plain layout does:
  // source token j at place j, m after the source; the other row keeps its canvas.
  BatchTensors mixed = bt;
  mixed.compact_start_B = torch::tensor({true, false});
  const torch::Tensor x0_mixed = model::source_aligned_x0(mixed, anchor, m->absorbing(), 3, m->canvas_blank(3));
  const torch::Tensor x0_plain = model::source_aligned_x0(bt, anchor, m->absorbing());
  EXPECT_EQ(max_diff(x0_mixed[0], x0_plain[0]), 0.0);
  EXPECT_EQ(max_diff(x0_mixed[1], x0[1]), 0.0);
  EXPECT_LT(max_diff(x0_mixed[0][first], m->embedding_weight()[10]), 1e-7);
  EXPECT_LT(max_diff(x0_mixed[0][first + 1], m->embedding_weight()[11]), 1e-7);
  EXPECT_LT(max_diff(x0_mixed[0][first + 2], m->absorbing()), 1e-7);
  // The generator's compact candidates start so too (sample.mbr_compact_share): each row reads its
  // canvas's places either way.
  {
    infer::GenerateOptions& o = generator.options();
    o.sampler.steps = 2;
    o.sampler.start_time = 0.5;
    o.mbr = 2;
    o.mbr_compact_share = 0.5;
    EXPECT_FALSE(infer::candidate_sampler(o, 0).compact_start);
    EXPECT_TRUE(infer::candidate_sampler(o, 1).compact_start);
    o.sampler.compact_start = true;
    const auto compact = generator.generate_ids(batch, at::detail::createCPUGenerator(1));
    ASSERT_EQ(compact.tokens.size(), 2u);
    EXPECT_LE(compact.tokens[0].size(), 6u);
    // How sure the model is of each row: a mean of probabilities, above chance (1 / V).
    ASSERT_EQ(compact.confidence.size(), 2u);
    for (double c : compact.confidence) {
      EXPECT_GT(c, 1.0 / static_cast<double>(m->embedding_weight().size(0)));
      EXPECT_LE(c, 1.0);
    }
    o.sampler.compact_start = false;
    o.mbr = 1;
    o.mbr_compact_share = 0.0;
  }
  // Without the stride's empty-place embedding the start is refused by name.
  EXPECT_THROW(model::source_aligned_x0(bt, anchor, m->absorbing(), 3), Error);
  // Mask-predict rounds would read the empty places as words: refused.
  generator.options().remask_rounds = 1;
  EXPECT_THROW(generator.generate_ids(batch, at::detail::createCPUGenerator(1)), Error);
}

// ----------------------------------------------------------------------------- rewrite head

// data.canvas_rewrite_compact gives the model a rewrite head: from the source alone, the probability
// that the target is a rewrite (written from the first place, started from the packed source). Its loss
// is the binary cross-entropy against the rows marked compact, and it can learn a rule of the source.
TEST(RewriteHead, ItsLossIsTheCrossEntropyOfTheCompactRowsAndItLearns) {
  const std::vector<std::string> canvas = {"data.target_canvas=source", "data.max_trg_len=37",
                                           "data.canvas_rewrite_below=0.45"};
  std::vector<std::string> with_sets = canvas;
  with_sets.push_back("data.canvas_rewrite_compact=true");
  const Config c = config_of(with_sets);
  Denoiser m = make_model(c), without = make_model(config_of(canvas));
  ASSERT_TRUE(m->has_rewrite_head());
  ASSERT_FALSE(without->has_rewrite_head());
  const int64_t D = 16;
  EXPECT_EQ(m->parameter_counts().total - without->parameter_counts().total, 2 * D * D + D + D + 1);

  BatchTensors bt = model::to_tensors(make_batch(c), torch::kCPU);
  bt.compact_start_B = torch::tensor({true, false, true});
  const diffusion::LossOptions o = diffusion::loss_options_from_config(c);
  ASSERT_EQ(o.rewrite_weight, 0.1);
  ASSERT_EQ(diffusion::loss_options_from_config(config_of(canvas)).rewrite_weight, 0.0);
  at::Generator gen = at::detail::createCPUGenerator(3);
  const diffusion::NoiseSchedule s = diffusion::NoiseSchedule::from_config(c);
  const diffusion::LossTerms t = diffusion::diffusion_loss(m, bt, s, torch::tensor({5, 50, 500}), torch::ones({3}), o, gen);
  const torch::Tensor src_mask = bt.key_mask_BL & bt.trg_mask_BL.logical_not();
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor logits_B = m->rewrite_logits(m->embed(bt.ids_BL), src_mask);
    ASSERT_EQ(logits_B.sizes(), (torch::IntArrayRef{3}));
    const torch::Tensor p_B = torch::sigmoid(logits_B.to(torch::kDouble));
    const double bce = -(std::log(p_B[0].item<double>()) + std::log(1 - p_B[1].item<double>()) +
                         std::log(p_B[2].item<double>())) / 3;
    EXPECT_NEAR(t.rewrite.item<double>(), bce, 1e-5);
  }
  // A batch without compact rows asks the head for 0 everywhere.
  bt.compact_start_B = torch::Tensor();
  at::Generator gen2 = at::detail::createCPUGenerator(3);
  const diffusion::LossTerms none = diffusion::diffusion_loss(m, bt, s, torch::tensor({5, 50, 500}), torch::ones({3}), o, gen2);
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor p_B = torch::sigmoid(m->rewrite_logits(m->embed(bt.ids_BL), src_mask).to(torch::kDouble));
    EXPECT_NEAR(none.rewrite.item<double>(), -torch::log1p(-p_B).mean().item<double>(), 1e-5);
  }
  // The rule "the source holds token 30" (a template's mark), learnt by the head from eight sources.
  InMemorySource source;
  const std::vector<std::vector<int32_t>> sources = {{10, 30, 12}, {14, 15}, {30, 17, 18, 19}, {20, 21, 22},
                                                     {23, 24, 30}, {25, 26, 27, 28}, {31, 30}, {32, 33, 34}};
  for (const auto& src : sources) source.add(src, {35});
  const BatchTensors rule = model::to_tensors(data::pack_batch(source, {0, 1, 2, 3, 4, 5, 6, 7}, data::pack_options_from_config(c)),
                                              torch::kCPU);
  const torch::Tensor want = torch::tensor({1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f});
  const torch::Tensor rule_src = rule.key_mask_BL & rule.trg_mask_BL.logical_not();
  torch::optim::Adam adam(m->parameters(), torch::optim::AdamOptions(1e-2));
  for (int step = 0; step < 150; ++step) {
    adam.zero_grad();
    torch::binary_cross_entropy_with_logits(m->rewrite_logits(m->embed(rule.ids_BL), rule_src), want).backward();
    adam.step();
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor p = torch::sigmoid(m->rewrite_logits(m->embed(rule.ids_BL), rule_src));
  EXPECT_TRUE(torch::equal(p > 0.5, want > 0.5)) << p;
}

// Generation starts each row as the rewrite head says: a row above sample.rewrite_threshold from its
// packed source, read up to its first empty place, exactly as a candidate started packed
// (sample.mbr_compact_share); a threshold of 1 keeps every row on the canvas.
TEST(RewriteHead, GenerationStartsEachRowAsItsHeadSays) {
  const Config c = config_of({"data.target_canvas=source", "data.max_trg_len=37", "data.canvas_rewrite_below=0.45",
                              "data.canvas_rewrite_compact=true"});
  Denoiser m = make_model(c);
  {
    torch::NoGradGuard no_grad;
    auto params = m->named_parameters();
    params["rewrite_fc2.weight"].zero_();
    params["rewrite_fc2.bias"].fill_(10.0);  // every row a rewrite
  }
  m->eval();
  infer::TextGenerator generator(c, m, runtime::Runtime{});
  infer::GenerateOptions& o = generator.options();
  o.sampler.steps = 2;
  o.sampler.start_time = 0.5;
  InMemorySource source;
  source.add({10, 11}, {});
  source.add({13, 14, 15}, {});
  const Batch batch = data::pack_batch(source, {0, 1}, generator.pack_options());
  const BatchTensors bt = model::to_tensors(batch, torch::kCPU);
  EXPECT_TRUE(torch::equal(generator.predict_rewrites(bt), torch::tensor({true, true})));
  const auto by_head = generator.generate_ids(batch, at::detail::createCPUGenerator(1));
  o.rewrite_threshold = 1.0;
  EXPECT_TRUE(torch::equal(generator.predict_rewrites(bt), torch::tensor({false, false})));
  const auto on_canvas = generator.generate_ids(batch, at::detail::createCPUGenerator(1));
  o.sampler.compact_start = true;  // what a packed MBR candidate does, whatever the head says
  const auto packed = generator.generate_ids(batch, at::detail::createCPUGenerator(1));
  EXPECT_EQ(by_head.tokens, packed.tokens);
  EXPECT_NE(by_head.tokens, on_canvas.tokens);
  // A head that says no to every row keeps them all on the canvas, as the threshold of 1 did.
  o.sampler.compact_start = false;
  o.rewrite_threshold = 0.5;
  {
    torch::NoGradGuard no_grad;
    m->named_parameters()["rewrite_fc2.bias"].fill_(-10.0);
  }
  EXPECT_EQ(generator.generate_ids(batch, at::detail::createCPUGenerator(1)).tokens, on_canvas.tokens);
  // A packed row is read up to its first empty place: every id a word, at most its canvas's places.
  for (std::size_t b = 0; b < 2; ++b) {
    EXPECT_LE(packed.tokens[b].size(), b == 0 ? 4u : 6u);
    for (int32_t id : packed.tokens[b]) EXPECT_GE(id, data::SpecialTokens::count);
  }
}

// Training from the source (train.source_start_prob): the chosen rows' input is the source-aligned x0
// noised by the forward process, the others' the target's; the loss still asks for the target. The
// loss equals that computed by hand from the same draws, and differs from training on targets alone.
TEST(StartFromSource, TrainingNoisesTheChosenRowsFromTheSource) {
  const Config c = config_of({"train.source_start_prob=0.5"});
  Denoiser m = make_model(c);
  const BatchTensors bt = model::to_tensors(make_batch(c), torch::kCPU);
  const diffusion::NoiseSchedule s = diffusion::NoiseSchedule::from_config(c);
  const diffusion::LossOptions o = diffusion::loss_options_from_config(c);
  ASSERT_EQ(o.source_start_prob, 0.5);
  const torch::Tensor t_B = torch::tensor({3, 150, 90}, torch::kLong), w_B = torch::ones({3});
  const torch::Tensor from_source_B = torch::tensor({true, false, true});

  at::Generator gen = at::detail::createCPUGenerator(11);
  const diffusion::LossTerms terms = diffusion::diffusion_loss(m, bt, s, t_B, w_B, o, gen, from_source_B);

  at::Generator g2 = at::detail::createCPUGenerator(11);
  torch::NoGradGuard no_grad;
  const torch::Tensor emb = m->embed(bt.ids_BL);
  const diffusion::Noised n = diffusion::noise_batch(s, emb, t_B, bt.trg_mask_BL, m->absorbing(), o.forward, g2);
  const torch::Tensor from_src = model::source_aligned_x0(bt, emb, m->absorbing());
  const diffusion::Noised ns = diffusion::noise_batch(s, from_src, t_B, bt.trg_mask_BL, m->absorbing(), o.forward, g2);
  DenoiserInputs in;
  in.t_B = t_B.to(torch::kFloat) * (1000.0 / 2000.0);
  in.key_mask_BL = bt.key_mask_BL;
  in.global_mask_BL = bt.global_mask_BL;
  in.trg_mask_BL = bt.trg_mask_BL;
  const auto mse_from = [&](const torch::Tensor& x_t) {
    in.x_t_BLC = x_t;
    return diffusion::mse_loss_B(m->forward(in).x0_BLC, n.x0_BLC, bt.trg_mask_BL).mean().item<double>();
  };
  EXPECT_NEAR(terms.mse.item<double>(), mse_from(torch::where(from_source_B.view({3, 1, 1}), ns.x_t_BLC, n.x_t_BLC)), 1e-6);
  EXPECT_GT(std::abs(terms.mse.item<double>() - mse_from(n.x_t_BLC)), 1e-6);
}

// ----------------------------------------------------------------------------- noise factor

TEST(NoiseFactor, DividesTheSignalToNoiseRatio) {
  const diffusion::NoiseSchedule base = diffusion::NoiseSchedule::make("sqrt", 2000);
  const diffusion::NoiseSchedule same = diffusion::NoiseSchedule::make("sqrt", 2000, 1.0);
  EXPECT_EQ(base.alphas_cumprod, same.alphas_cumprod);
  const diffusion::NoiseSchedule f4 = diffusion::NoiseSchedule::make("sqrt", 2000, 4.0);
  for (std::size_t t : {0u, 10u, 500u, 1999u}) {
    const double ab = base.alphas_cumprod[t];
    const double snr = ab / (1.0 - ab), snr4 = f4.alphas_cumprod[t] / (1.0 - f4.alphas_cumprod[t]);
    EXPECT_NEAR(snr4, snr / 16.0, 1e-9 * snr) << t;
  }
}

}  // namespace
}  // namespace mds
