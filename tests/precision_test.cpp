// Mixed precision on the CPU: how train.precision resolves (and the error for bf16 on a CPU), that
// AutocastScope and NoAutocast restore what was there, that the loss terms are float32 whatever the
// dtype of the model's outputs, and, through CPU bf16 autocast with dense attention (the CPU stand-in
// for the CUDA path), that a training step leaves fp32 gradients on fp32 weights and that sampling
// keeps a float32 state. GPU runs are in train_gpu_test.cpp.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/cast_cache.h"
#include "core/config.h"
#include "core/error.h"
#include "core/torch_compat.h"
#include "data/batcher.h"
#include "diffusion/loss.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "runtime/precision.h"
#include "test_util.h"

namespace mds {

using data::InMemorySource;
using data::PackOptions;
using data::pack_batch;
using diffusion::LossOptions;
using diffusion::LossTerms;
using diffusion::NoiseSchedule;
using diffusion::SampleInputs;
using diffusion::SamplerOptions;
using diffusion::chosen_rows;
using diffusion::diffusion_loss;
using diffusion::mse_loss_B;
using diffusion::prior_loss_B;
using diffusion::rounding_loss_B;
using diffusion::sample;
using model::BatchTensors;
using model::Denoiser;
using model::ModelOptions;
using model::model_options_from_config;
using model::to_tensors;
using runtime::Precision;
using runtime::PrecisionScope;
using runtime::resolve_precision;
using runtime::to_string;

namespace {

using test::error_of;

const c10::Device kCpu(c10::kCPU);
const c10::Device kCuda(c10::kCUDA, 0);  // a Device value only: no GPU is needed to resolve for it

TEST(Precision, ResolutionRules) {
  EXPECT_EQ(resolve_precision("auto", kCpu), Precision::fp32);
  EXPECT_EQ(resolve_precision("auto", kCuda), Precision::bf16);
  EXPECT_EQ(resolve_precision("fp32", kCpu), Precision::fp32);
  EXPECT_EQ(resolve_precision("fp32", kCuda), Precision::fp32);
  EXPECT_EQ(resolve_precision("bf16", kCuda), Precision::bf16);
  EXPECT_STREQ(to_string(Precision::fp32), "fp32");
  EXPECT_STREQ(to_string(Precision::bf16), "bf16");
  const std::string cpu_bf16 = error_of([] { resolve_precision("bf16", kCpu); });
  EXPECT_NE(cpu_bf16.find("\"bf16\" needs a CUDA device"), std::string::npos) << cpu_bf16;
  EXPECT_NE(cpu_bf16.find("cpu"), std::string::npos) << cpu_bf16;
  EXPECT_THROW(resolve_precision("fp16", kCuda), Error);
}

TEST(Precision, Bf16OnCpuNamesTheKeyAndWhereItWasSet) {
  test::TempDir dir;
  const std::string path = dir.file("run.toml");
  test::write_file(path, "[train]\ndevice = \"cpu\"\nprecision = \"bf16\"\n");
  const Config from_file = Config::load(path);  // valid as a configuration: the device decides
  const std::string e = error_of([&] { resolve_precision(from_file, "train.precision", kCpu); });
  EXPECT_NE(e.find(path + ":3: train.precision = \"bf16\" needs a CUDA device"), std::string::npos) << e;
  EXPECT_EQ(resolve_precision(from_file, "train.precision", kCuda), Precision::bf16);

  const Config from_set = Config::load("", {"train.precision=bf16"});
  const std::string s = error_of([&] { resolve_precision(from_set, "train.precision", kCpu); });
  EXPECT_NE(s.find("--set: train.precision = \"bf16\""), std::string::npos) << s;
  // The default, auto, is what lets one configuration run on both.
  EXPECT_EQ(resolve_precision(Config(), "train.precision", kCpu), Precision::fp32);
  EXPECT_EQ(resolve_precision(Config(), "train.precision", kCuda), Precision::bf16);
}

TEST(Precision, AutocastScopesNestAndRestore) {
  const auto f = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor a = at::randn({4, 3}, f), b = at::randn({3, 5}, f);
  ASSERT_FALSE(compat::autocast_enabled(c10::kCPU));
  EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kFloat);
  {
    compat::AutocastScope outer(c10::kCPU, true, at::kBFloat16);
    EXPECT_TRUE(compat::autocast_enabled(c10::kCPU));
    EXPECT_EQ(compat::autocast_dtype(c10::kCPU), at::kBFloat16);
    EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kBFloat16);
    {
      compat::NoAutocast fp32_island(a);
      EXPECT_FALSE(compat::autocast_enabled(c10::kCPU));
      EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kFloat);
      {
        compat::AutocastScope inner(c10::kCPU, true, at::kBFloat16);
        EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kBFloat16);
      }
      EXPECT_FALSE(compat::autocast_enabled(c10::kCPU));
      EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kFloat);
    }
    EXPECT_TRUE(compat::autocast_enabled(c10::kCPU));
    EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kBFloat16);
  }
  EXPECT_FALSE(compat::autocast_enabled(c10::kCPU));
  EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kFloat);

  // The CUDA flags are thread state too (no GPU needed to set them): the dtype comes back, and the
  // CPU's state is not touched.
  const at::ScalarType cuda_dtype = compat::autocast_dtype(c10::kCUDA);
  const bool cuda_enabled = compat::autocast_enabled(c10::kCUDA);
  {
    compat::AutocastScope gpu(c10::kCUDA, true, cuda_dtype == at::kBFloat16 ? at::kHalf : at::kBFloat16);
    EXPECT_TRUE(compat::autocast_enabled(c10::kCUDA));
    EXPECT_NE(compat::autocast_dtype(c10::kCUDA), cuda_dtype);
    EXPECT_FALSE(compat::autocast_enabled(c10::kCPU));
  }
  EXPECT_EQ(compat::autocast_enabled(c10::kCUDA), cuda_enabled);
  EXPECT_EQ(compat::autocast_dtype(c10::kCUDA), cuda_dtype);
}

TEST(Precision, PrecisionScopeIsAutocastForBf16Only) {
  const auto f = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor a = at::randn({2, 2}, f);
  {
    PrecisionScope none(Precision::fp32, kCpu);
    EXPECT_FALSE(compat::autocast_enabled(c10::kCPU));
    EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kFloat);
  }
  {
    PrecisionScope bf16(Precision::bf16, kCpu);  // the trainer refuses this pairing; the scope itself works
    EXPECT_TRUE(compat::autocast_enabled(c10::kCPU));
    EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kBFloat16);
  }
  EXPECT_FALSE(compat::autocast_enabled(c10::kCPU));
}

// bf16 tensors fed straight into the loss terms: each term is float32, equal to the term of the
// same values promoted by hand (so nothing was computed in bf16), and gradients reach the bf16 input.
TEST(PrecisionLoss, TermsAreFloat32FromBf16Outputs) {
  torch::manual_seed(3);
  const int64_t B = 2, L = 6, C = 4, V = 11;
  const auto f = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor chosen_BL = at::tensor(std::vector<uint8_t>{0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, at::kByte)
                                   .view({B, L})
                                   .to(at::kBool);
  const at::Tensor ids_BL = at::randint(V, {B, L}, at::TensorOptions().dtype(at::kLong));
  const at::Tensor target_BLC = at::randn({B, L, C}, f);
  const at::Tensor x0_hat_bf = (target_BLC + 0.3 * at::randn({B, L, C}, f)).to(at::kBFloat16).requires_grad_();
  const at::Tensor x0_bf = at::randn({B, L, C}, f).to(at::kBFloat16);
  const at::Tensor m_C = at::randn({C}, f);
  const int64_t N = chosen_BL.sum().item<int64_t>();
  const at::Tensor logits_bf = (3.0 * at::randn({N, V}, f)).to(at::kBFloat16);
  ASSERT_EQ(chosen_rows(x0_bf, chosen_BL).size(0), N);

  const at::Tensor mse = mse_loss_B(x0_hat_bf, target_BLC, chosen_BL);
  const at::Tensor rounding = rounding_loss_B(logits_bf, ids_BL, chosen_BL);
  const at::Tensor prior = prior_loss_B(x0_bf, m_C, 0.05, chosen_BL);
  for (const at::Tensor& t : {mse, rounding, prior}) {
    EXPECT_EQ(t.scalar_type(), at::kFloat);
    EXPECT_EQ(t.sizes(), at::IntArrayRef({B}));
    EXPECT_TRUE(at::isfinite(t).all().item<bool>());
  }
  EXPECT_TRUE(at::equal(mse, mse_loss_B(x0_hat_bf.detach().to(at::kFloat), target_BLC, chosen_BL)));
  EXPECT_TRUE(at::equal(rounding, rounding_loss_B(logits_bf.to(at::kFloat), ids_BL, chosen_BL)));
  EXPECT_TRUE(at::equal(prior, prior_loss_B(x0_bf.to(at::kFloat), m_C, 0.05, chosen_BL)));
  // Every term of a bf16 input is also float32 when the loss runs under autocast.
  {
    compat::AutocastScope autocast(c10::kCPU, true, at::kBFloat16);
    EXPECT_EQ(mse_loss_B(x0_hat_bf, target_BLC, chosen_BL).scalar_type(), at::kFloat);
    EXPECT_EQ(rounding_loss_B(logits_bf, ids_BL, chosen_BL).scalar_type(), at::kFloat);
    EXPECT_EQ(prior_loss_B(x0_bf, m_C, 0.05, chosen_BL).scalar_type(), at::kFloat);
  }
  mse.sum().backward();
  ASSERT_TRUE(x0_hat_bf.grad().defined());
  EXPECT_EQ(x0_hat_bf.grad().scalar_type(), at::kBFloat16);
  // Float64 stays float64 (tests that check against references in double).
  EXPECT_EQ(mse_loss_B(target_BLC.to(at::kDouble), target_BLC.to(at::kDouble), chosen_BL).scalar_type(),
            at::kDouble);
}

// --- the model under bf16 autocast on the CPU (dense attention: the sliding-attention CPU kernel is
// float32/float64 only) -----------------------------------------------------------------------------

ModelOptions dense_tiny() {
  return model_options_from_config(
      Config::load("", {"model.embed_dim=8", "model.dim=32", "model.layers=2", "model.heads=2", "model.ffn_dim=48",
                        "model.time_embed_dim=16", "moe.experts=3", "moe.top_k=2", "attention.type=dense",
                        "data.max_src_len=12", "data.max_trg_len=6", "model.dropout=0"}),
      /*vocab_size=*/40);
}

BatchTensors tiny_batch() {
  InMemorySource source;
  source.add({10, 11, 12, 13, 14}, {20, 21, 22});
  source.add({15, 16}, {23, 24, 25, 26});
  PackOptions pack;
  pack.max_src_len = 12;
  pack.max_trg_len = 6;
  return to_tensors(pack_batch(source, {0, 1}, pack), c10::kCPU);
}

TEST(PrecisionLoss, AutocastStepKeepsFp32WeightsAndGradients) {
  torch::manual_seed(5);
  Denoiser model(dense_tiny());
  model->train();
  const BatchTensors bt = tiny_batch();
  const NoiseSchedule schedule = NoiseSchedule::make("sqrt", 100);
  const at::Tensor t_B = at::tensor(std::vector<int64_t>{3, 70});
  const at::Tensor w_B = at::ones({2});
  LossOptions o;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  LossTerms terms;
  {
    PrecisionScope scope(Precision::bf16, kCpu);
    // The model really ran in bf16: its x0 is bf16 under the scope.
    const at::Tensor x0 = model->forward(model->embed(bt.ids_BL), at::zeros({2}), bt.key_mask_BL,
                                         bt.global_mask_BL).x0_BLC;
    EXPECT_EQ(x0.scalar_type(), at::kBFloat16);
    terms = diffusion_loss(model, bt, schedule, t_B, w_B, o, gen);
  }
  for (const at::Tensor& t : {terms.total, terms.loss_B, terms.mse, terms.rounding, terms.prior, terms.absorb,
                              terms.moe_aux, terms.moe_z})
    EXPECT_EQ(t.scalar_type(), at::kFloat);
  ASSERT_TRUE(std::isfinite(terms.total.item<double>()));
  terms.total.backward();  // outside the scope, as the trainer does
  int with_grad = 0;
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), at::kFloat) << p.key();
    if (!p.value().grad().defined()) continue;
    ++with_grad;
    EXPECT_EQ(p.value().grad().scalar_type(), at::kFloat) << p.key();
    EXPECT_TRUE(at::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
  EXPECT_GT(with_grad, 10);
}

// What TextGenerator hands the sampler for this batch (run under NoGradGuard).
SampleInputs sample_inputs(Denoiser& model, const BatchTensors& bt) {
  SampleInputs in;
  in.anchor_BLC = model->embed(bt.ids_BL);
  in.trg_mask_BL = bt.trg_mask_BL;
  in.absorbing_C = model->absorbing();
  in.embedding_VC = model->embedding_weight();
  return in;
}

TEST(PrecisionLoss, SamplerStateStaysFloat32WithABf16Model) {
  torch::manual_seed(6);
  Denoiser model(dense_tiny());
  model->eval();
  const BatchTensors bt = tiny_batch();
  torch::NoGradGuard no_grad;
  const SampleInputs in = sample_inputs(model, bt);
  std::vector<at::ScalarType> seen_x, seen_out;
  auto predict = [&](const at::Tensor& x_BLC, const at::Tensor& t_B) {
    seen_x.push_back(x_BLC.scalar_type());
    PrecisionScope scope(Precision::bf16, kCpu);  // as TextGenerator does for bf16
    at::Tensor x0 = model->forward(x_BLC, t_B, bt.key_mask_BL, bt.global_mask_BL).x0_BLC;
    seen_out.push_back(x0.scalar_type());
    return x0;  // bf16: the sampler casts it to its state's dtype
  };
  SamplerOptions so;
  so.sampler = "dpm++2m";
  so.steps = 4;
  so.clamp = true;  // the nearest-embedding distances must not be computed in bf16 either
  const at::Tensor x0 = sample(NoiseSchedule::make("sqrt", 100), predict, in, so,
                               at::make_generator<at::CPUGeneratorImpl>(1));
  EXPECT_EQ(x0.scalar_type(), at::kFloat);
  EXPECT_EQ(x0.sizes(), in.anchor_BLC.sizes());
  EXPECT_TRUE(at::isfinite(x0).all().item<bool>());
  ASSERT_EQ(seen_x.size(), 4u);  // DPM-Solver++: at x_T, then after every update but the last
  for (auto d : seen_x) EXPECT_EQ(d, at::kFloat);
  for (auto d : seen_out) EXPECT_EQ(d, at::kBFloat16);
  EXPECT_FALSE(compat::autocast_enabled(c10::kCPU));
}

// Generation keeps the weights' casts for all its steps (core/cast_cache.h, sample.cast_cache): the
// same state, bit for bit, as casting them in every model call.
TEST(PrecisionLoss, SamplingWithTheCastCacheGivesTheSameState) {
  torch::manual_seed(7);
  Denoiser model(dense_tiny());
  model->eval();
  const BatchTensors bt = tiny_batch();
  torch::NoGradGuard no_grad;
  const SampleInputs in = sample_inputs(model, bt);
  auto predict = [&](const at::Tensor& x_BLC, const at::Tensor& t_B) {
    PrecisionScope scope(Precision::bf16, kCpu);
    return model->forward(x_BLC, t_B, bt.key_mask_BL, bt.global_mask_BL).x0_BLC;
  };
  SamplerOptions so;
  so.sampler = "dpm++2m";
  so.steps = 4;
  const auto schedule = NoiseSchedule::make("sqrt", 100);
  const at::Tensor plain = sample(schedule, predict, in, so, at::make_generator<at::CPUGeneratorImpl>(3));
  at::Tensor cached;
  {
    const core::CastCacheScope scope;
    cached = sample(schedule, predict, in, so, at::make_generator<at::CPUGeneratorImpl>(3));
    EXPECT_GT(core::cast_cache_size(), 0u);  // the bf16 stream's layer norms took their weights from it
  }
  EXPECT_TRUE(at::equal(plain, cached));
  EXPECT_EQ(core::cast_cache_size(), 0u);
  EXPECT_FALSE(compat::autocast_enabled(c10::kCPU));
}

}  // namespace
}  // namespace mds
