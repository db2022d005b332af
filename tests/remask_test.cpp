// Mask-predict rounds after the solver (infer/remask.h, sample.remask_*): which tokens a round sends
// back to m, where it starts from, and that generation runs the rounds it is asked for.
//
// Dimensions: B batch, L length, C embedding dim, T target positions, V vocabulary.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "data/batcher.h"
#include "infer/generator.h"
#include "infer/remask.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "runtime/runtime.h"
#include "test_util.h"

namespace mds {
namespace {

constexpr int64_t kVocab = 40;

Config tiny_config(std::vector<std::string> extra = {}) {
  std::vector<std::string> sets = {"model.embed_dim=8", "model.dim=16", "model.layers=2", "model.heads=2",
                                   "model.ffn_dim=24", "model.time_embed_dim=8", "moe.experts=1",
                                   "attention.type=dense", "data.max_src_len=12", "data.max_trg_len=6",
                                   "model.dropout=0", "data.target_length=generate", "sample.length=source",
                                   "sample.start_time=0.3", "sample.steps=3"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return Config::load("", sets);
}

model::Denoiser tiny_model(const Config& c) {
  torch::manual_seed(5);
  model::Denoiser m(model::model_options_from_config(c, kVocab));
  m->eval();
  return m;
}

TEST(Remask, SharesDecayLinearlyOverTheRounds) {
  EXPECT_DOUBLE_EQ(infer::remask_share_of_round(0.3, 1, 3), 0.3);
  EXPECT_DOUBLE_EQ(infer::remask_share_of_round(0.3, 2, 3), 0.2);
  EXPECT_DOUBLE_EQ(infer::remask_share_of_round(0.3, 3, 3), 0.1);
  EXPECT_DOUBLE_EQ(infer::remask_share_of_round(0.5, 1, 1), 0.5);
  EXPECT_THROW(infer::remask_share_of_round(0.3, 4, 3), Error);
  EXPECT_THROW(infer::remask_share_of_round(0.3, 0, 3), Error);
}

TEST(Remask, PicksTheLeastConfidentEligiblePositionsOfEachRow) {
  const torch::Tensor conf = torch::tensor({0.9, 0.1, 0.5, 0.05, 0.3, 0.3, 0.3, 0.9}, torch::kDouble).view({2, 4});
  const torch::Tensor eligible =
      torch::tensor(std::vector<uint8_t>{1, 1, 1, 0, 1, 1, 1, 1}, torch::kByte).view({2, 4}).to(torch::kBool);
  // Row 0: 3 eligible, floor(1.5) = 1: position 1 (0.1; position 3 is lower but not eligible).
  // Row 1: 4 eligible, 2 picked among three equal confidences: the earlier two.
  const torch::Tensor half = infer::least_confident(conf, eligible, 0.5);
  EXPECT_TRUE(torch::equal(half, torch::tensor(std::vector<uint8_t>{0, 1, 0, 0, 1, 1, 0, 0}, torch::kByte)
                                     .view({2, 4}).to(torch::kBool)));
  // Row 0: floor(3 x 0.7) = 2: positions 1 and 2; row 1: floor(2.8) = 2.
  const torch::Tensor more = infer::least_confident(conf.to(torch::kFloat), eligible, 0.7);
  EXPECT_TRUE(torch::equal(more, torch::tensor(std::vector<uint8_t>{0, 1, 1, 0, 1, 1, 0, 0}, torch::kByte)
                                     .view({2, 4}).to(torch::kBool)));
  EXPECT_FALSE(infer::least_confident(conf, eligible, 0.0).any().item<bool>());
  EXPECT_TRUE(torch::equal(infer::least_confident(conf, eligible, 1.0), eligible));
  EXPECT_THROW(infer::least_confident(conf, eligible.view({8}), 0.5), Error);
}

// A round's start from a solved x0 whose target tokens are exact word embeddings, but for two
// positions near the origin, where the rounding is unsure: those go to m; every other read
// word starts from its own embedding, and the EOS from where the solver left it.
TEST(Remask, StartSendsTheUnsureTokensToMAndKeepsTheWords) {
  // Rows of RMS 4 in 8 dimensions: a word's own logit (about 128) stands far above the others', so the
  // rounding is sure of an exact embedding.
  const Config c =
      tiny_config({"sample.remask_rounds=2", "sample.remask_share=0.5", "model.embed_norm=l2", "model.embed_scale=4"});
  model::Denoiser m = tiny_model(c);
  infer::TextGenerator generator(c, m, runtime::Runtime{});
  data::InMemorySource source;
  source.add({10, 11, 12, 13}, {});
  source.add({14, 15, 16, 17}, {});
  const data::Batch batch = data::pack_batch(source, {0, 1}, generator.pack_options());
  const model::BatchTensors bt0 = model::to_tensors(batch, torch::kCPU);
  const torch::Tensor length_B = generator.output_lengths(batch, bt0);
  ASSERT_TRUE(torch::equal(length_B, torch::tensor({4, 4}, torch::kLong)));
  const model::BatchTensors bt = model::limit_target_region(bt0, length_B + 1);
  torch::NoGradGuard no_grad;
  const int64_t first = batch.src_region + 2;
  const torch::Tensor E = m->embedding_weight();
  // Words the rounding reads back as themselves (checked below), and a solved x0 made of them.
  const std::vector<std::vector<int64_t>> words = {{20, 21, 22, 23}, {24, 25, 26, 27}};
  torch::Tensor x0 = m->embed(bt.ids_BL).clone();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t j = 0; j < 4; ++j) x0[b][first + j] = m->embed(torch::tensor({words[b][j]}))[0];
  const torch::Tensor eos_before = x0.narrow(1, first + 4, 1).clone();
  x0[0][first + 2] = 0.02 * x0[0][first + 2];  // near the origin: every word about as likely
  x0[1][first + 0] = 0.05 * x0[1][first + 0];
  const torch::Tensor p_BTV = torch::softmax(m->logits(x0.narrow(1, first, 4)).to(torch::kFloat), -1);
  const torch::Tensor p_BT = std::get<0>(p_BTV.max(-1));
  // The shrunk rows must be each row's least confident positions for the test to say something.
  ASSERT_EQ(p_BT[0].argmin().item<int64_t>(), 2);
  ASSERT_EQ(p_BT[1].argmin().item<int64_t>(), 0);

  // Round 1 of 2 with share 0.5: 0.5 of 4 tokens = 2 a row; round 2: 0.25 -> 1 a row.
  const auto first_round = generator.remask_start(bt, x0, first, length_B, 1);
  EXPECT_EQ(first_round.jump_BL.sum().item<int64_t>(), 4);
  const auto start = generator.remask_start(bt, x0, first, length_B, 2);
  torch::Tensor want_jump = torch::zeros_like(start.jump_BL);
  want_jump[0][first + 2] = true;
  want_jump[1][first + 0] = true;
  EXPECT_TRUE(torch::equal(start.jump_BL, want_jump));
  EXPECT_TRUE(torch::equal(first_round.jump_BL.logical_and(want_jump), want_jump));
  const torch::Tensor word_BT = std::get<1>(p_BTV.max(-1));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t j = 0; j < 4; ++j) {
      if (want_jump[b][first + j].item<bool>()) continue;
      EXPECT_EQ(word_BT[b][j].item<int64_t>(), words[b][j]) << b << " " << j;
      EXPECT_TRUE(torch::equal(start.x0_BLC[b][first + j], m->embed(torch::tensor({words[b][j]}))[0])) << b << " " << j;
    }
  EXPECT_TRUE(torch::equal(start.x0_BLC.narrow(1, first + 4, 1), eos_before));
  EXPECT_TRUE(torch::equal(start.x0_BLC.narrow(1, 0, first), x0.narrow(1, 0, first)));
}

// Generation with rounds runs one more solve per round (the observer sees every model call) and is
// reproducible by seed; the options are checked by name.
TEST(Remask, GenerationRunsTheRoundsItIsAskedFor) {
  const Config c = tiny_config({"sample.remask_rounds=2"});
  model::Denoiser m = tiny_model(c);
  infer::TextGenerator generator(c, m, runtime::Runtime{});
  EXPECT_EQ(infer::model_calls(generator.options(), 2000), 9);  // 3 solver steps, three solves
  data::InMemorySource source;
  source.add({10, 11, 12}, {});
  source.add({13, 14, 15, 16, 17}, {});
  const data::Batch batch = data::pack_batch(source, {0, 1}, generator.pack_options());
  std::vector<int64_t> steps;
  const infer::GeneratedBatch out = generator.generate_ids(
      batch, at::detail::createCPUGenerator(3), [&](int64_t step, const infer::GeneratedBatch&) { steps.push_back(step); });
  ASSERT_EQ(steps.size(), 9u);
  EXPECT_EQ(steps.back(), 9);
  ASSERT_EQ(out.tokens.size(), 2u);
  EXPECT_EQ(out.tokens[0].size(), 3u);  // sample.length = source
  EXPECT_EQ(out.tokens[1].size(), 5u);
  EXPECT_EQ(generator.generate_ids(batch, at::detail::createCPUGenerator(3)).tokens, out.tokens);

  infer::GenerateOptions o = generator.options();
  o.sampler.sampler = "ancestral";
  o.sampler.start_time = 1.0;
  EXPECT_THROW(infer::check_generate_options(o), Error);
  o = generator.options();
  o.remask_time = 0.0;
  EXPECT_THROW(infer::check_generate_options(o), Error);
}

// A model without m cannot send tokens back to it: the generator says so when it is made.
TEST(Remask, AModelWithoutTheAbsorbingStateIsRefusedByName) {
  const Config c = tiny_config({"sample.remask_rounds=1", "diffusion.soft_absorbing=false"});
  const std::string message =
      test::error_of([&] { infer::TextGenerator generator(c, tiny_model(c), runtime::Runtime{}); });
  EXPECT_NE(message.find("sample.remask_rounds needs a model with the absorbing state m"), std::string::npos)
      << message;
  const Config off = tiny_config({"diffusion.soft_absorbing=false"});
  infer::TextGenerator generator(off, tiny_model(off), runtime::Runtime{});  // no rounds asked: fine
  // Asked for later, through options(), before anything is solved.
  generator.options().remask_rounds = 1;
  data::InMemorySource source;
  source.add({10, 11, 12}, {});
  const data::Batch batch = data::pack_batch(source, {0}, generator.pack_options());
  int64_t steps = 0;
  EXPECT_NE(test::error_of([&] {
              generator.generate_ids(batch, at::detail::createCPUGenerator(3),
                                     [&](int64_t, const infer::GeneratedBatch&) { ++steps; });
            }).find("absorbing state m"),
            std::string::npos);
  EXPECT_EQ(steps, 0);
}

}  // namespace
}  // namespace mds
