// Mixed precision on a GPU, through the public model API only (the sparse-attention CUDA path is the
// kernel's business): a short training run in bf16 on CUDA against the same run in fp32 on the CPU,
// the denoiser's forward pass under bf16 autocast against fp32 on the same weights, and DPM-Solver++
// generation with the model in bf16. Every test skips where no CUDA device is visible; the CPU-side
// pieces (resolution, loss dtypes, autocast on the CPU) are in precision_test.cpp.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/fs.h"
#include "data/batcher.h"
#include "data/jsonl.h"
#include "data/tokenizer.h"
#include "infer/generator.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "runtime/precision.h"
#include "test_util.h"
#include "io/checkpoint.h"
#include "runtime/cuda_graph.h"
#include "train/trainer.h"

namespace mds {

using data::InMemorySource;
using data::PackOptions;
using data::Tokenizer;
using data::TokenizerTrainOptions;
using data::pack_batch;
using data::read_jsonl;
using diffusion::SamplerOptions;
using infer::TextGenerator;
using io::CheckpointContent;
using io::read_checkpoint;
using model::BatchTensors;
using model::Denoiser;
using model::DenoiserOutput;
using model::model_options_from_config;
using model::to_tensors;
using runtime::Precision;
using runtime::PrecisionScope;
using runtime::Runtime;
using runtime::resolve_precision;
using train::TrainResult;

namespace {

const std::string kPairs = "tests/fixtures/debian-descriptions-240.jsonl";

double mean(const std::vector<double>& v, std::size_t from, std::size_t count) {
  double s = 0;
  for (std::size_t i = from; i < from + count; ++i) s += v.at(i);
  return s / static_cast<double>(count);
}

class TrainGpuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!torch::cuda::is_available()) return;
    dir_ = new test::TempDir();
    TokenizerTrainOptions o;
    o.inputs = {test::source_path(kPairs)};
    o.vocab_size = 400;
    o.threads = 1;
    Tokenizer::train(o, dir_->file("tok"));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // A small MoE-DiffuSeq with sparse attention on the 240 fixture pairs. No dropout and uniform t:
  // with every random draw (batches, t, noise) coming from the CPU generator, a CPU run and a CUDA
  // run of one seed see exactly the same data, and differ only in their arithmetic.
  static Config tiny(const std::string& run, const std::vector<std::string>& extra) {
    std::vector<std::string> sets = {
        "data.train=" + test::source_path(kPairs), "data.tokenizer=" + dir_->file("tok"),
        "train.out_dir=" + dir_->file(run), "data.max_src_len=64", "data.max_trg_len=16",
        "data.batch_tokens=1700", "data.max_batch_size=20", "model.embed_dim=16", "model.dim=64",
        "model.layers=2", "model.heads=4", "model.ffn_dim=128", "model.time_embed_dim=32", "moe.experts=4",
        "moe.top_k=2", "attention.window=8", "attention.dilation=[1,2]", "model.dropout=0",
        "diffusion.t_sampler=uniform", "train.steps=150", "train.lr=2e-3", "train.warmup_steps=20",
        "train.ema_decay=0", "train.log_every=1000", "train.eval_every=0", "train.save_every=0",
        "train.threads=4", "train.seed=17"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    return Config::load("", sets);
  }
  static test::TempDir* dir_;
};
test::TempDir* TrainGpuTest::dir_ = nullptr;

#define MDS_REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

TEST_F(TrainGpuTest, Bf16LossFallsLikeTheCpuRun) {
  MDS_REQUIRE_CUDA();
  const TrainResult cpu = train::train(tiny("cpu", {"train.device=cpu", "train.precision=auto"}), {});
  const TrainResult gpu = train::train(tiny("gpu", {"train.device=cuda", "train.precision=auto"}), {});
  ASSERT_EQ(cpu.losses.size(), 150u);
  ASSERT_EQ(gpu.losses.size(), 150u);
  for (double l : gpu.losses) ASSERT_TRUE(std::isfinite(l)) << "a bf16 step was skipped";
  const double cpu_first = mean(cpu.losses, 0, 20), cpu_last = mean(cpu.losses, 130, 20);
  const double gpu_first = mean(gpu.losses, 0, 20), gpu_last = mean(gpu.losses, 130, 20);
  std::printf("mean loss of steps 1-20 / 131-150: cpu fp32 %.4f / %.4f, cuda bf16 %.4f / %.4f\n", cpu_first,
              cpu_last, gpu_first, gpu_last);
  // Measured on the CPU (LibTorch 1.13, this configuration): the last 20 steps average 0.56 of the
  // first 20 (seeds 17, 18, 19: 0.56, 0.61, 0.59). 0.7 still fails a run that does not learn.
  EXPECT_LT(cpu_last, 0.7 * cpu_first);
  EXPECT_LT(gpu_last, 0.7 * gpu_first);
  // Both runs see identical batches and t (drawn from the CPU generator) and start from identical
  // weights; the noise is drawn on each run's device from the same seed (two streams of the same
  // law). Beyond that they differ by arithmetic: bf16 products (relative rounding 2^-9), the flash
  // kernel's accumulation order, MoE routing flips near ties, all compounding over 150 steps. The same run with dense attention in bf16 CPU autocast against fp32 (LibTorch 1.13)
  // stayed within 0.2% per step, and its last-20 mean agreed to 4 digits; 15% covers the GPU's own
  // kernels with a wide margin and is still well below the gap between learning and not (0.7 above).
  EXPECT_NEAR(gpu_last, cpu_last, 0.15 * cpu_last);
  // fp32 master weights and optimizer state, whatever the compute precision; the run records it.
  const CheckpointContent ck = read_checkpoint(fs::join(dir_->file("gpu"), "checkpoints/step_150"));
  for (const auto& [name, t] : ck.raw) EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;
  for (const auto& [name, t] : ck.optimizer) {
    if (t.is_floating_point()) {
      EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;
    }
  }
  EXPECT_EQ(ck.trainer_state.value("precision", std::string()), "bf16");
  EXPECT_EQ(ck.trainer_state.value("device", std::string()).rfind("cuda", 0), 0u);  // "cuda" or "cuda:0"
}

// Weights and inputs made on the CPU, copied to the GPU: the bf16 forward pass against fp32.
struct ForwardCase {
  Denoiser model{nullptr};
  BatchTensors batch;
  torch::Tensor x_BLC, t_B;
};

ForwardCase make_forward_case(const std::string& tok_dir) {
  torch::manual_seed(23);
  Tokenizer tok = Tokenizer::load(tok_dir);
  auto pairs = read_jsonl(test::source_path(kPairs));
  InMemorySource source;
  std::vector<std::size_t> idx;
  for (std::size_t i = 0; i < 6; ++i) {
    source.add(tok.encode(pairs[i].src), tok.encode(pairs[i].trg));
    idx.push_back(i);
  }
  PackOptions pack;
  pack.max_src_len = 64;
  pack.max_trg_len = 16;
  ForwardCase c;
  c.batch = to_tensors(pack_batch(source, idx, pack), c10::kCPU);
  Config config = Config::load("", {"data.max_src_len=64", "data.max_trg_len=16", "model.embed_dim=16",
                                    "model.dim=64", "model.layers=2", "model.heads=4", "model.ffn_dim=128",
                                    "model.time_embed_dim=32", "moe.experts=4", "moe.top_k=2",
                                    "attention.window=8", "attention.dilation=[1,2]", "model.dropout=0"});
  c.model = Denoiser(model_options_from_config(config, tok.vocab_size()));
  c.model->eval();
  torch::NoGradGuard no_grad;
  const auto B = c.batch.ids_BL.size(0), L = c.batch.ids_BL.size(1);
  // A noised input at mid-range times, as the model sees during training and sampling.
  c.x_BLC = c.model->embed(c.batch.ids_BL) + 0.5 * torch::randn({B, L, 16});
  c.t_B = torch::linspace(50.0, 950.0, B);
  return c;
}

BatchTensors on(const BatchTensors& b, c10::Device d) {
  BatchTensors out = b;
  out.ids_BL = b.ids_BL.to(d);
  out.trg_mask_BL = b.trg_mask_BL.to(d);
  out.key_mask_BL = b.key_mask_BL.to(d);
  out.global_mask_BL = b.global_mask_BL.to(d);
  if (b.trg_rows_N.defined()) out.trg_rows_N = b.trg_rows_N.to(d);
  if (b.key_rows_N.defined()) out.key_rows_N = b.key_rows_N.to(d);
  return out;
}

TEST_F(TrainGpuTest, Bf16ForwardMatchesFp32) {
  MDS_REQUIRE_CUDA();
  ForwardCase c = make_forward_case(dir_->file("tok"));
  torch::NoGradGuard no_grad;
  const DenoiserOutput ref = c.model->forward(c.x_BLC, c.t_B, c.batch.key_mask_BL, c.batch.global_mask_BL);
  const c10::Device cuda(c10::kCUDA, 0);
  c.model->to(cuda);
  const BatchTensors g = on(c.batch, cuda);
  DenoiserOutput out;
  {
    PrecisionScope scope(Precision::bf16, cuda);
    out = c.model->forward(c.x_BLC.to(cuda), c.t_B.to(cuda), g.key_mask_BL, g.global_mask_BL);
  }
  for (const auto& p : c.model->parameters()) ASSERT_EQ(p.scalar_type(), torch::kFloat);  // weights untouched
  const torch::Tensor y = out.x0_BLC.to(torch::kCPU, torch::kFloat);
  ASSERT_EQ(y.sizes(), ref.x0_BLC.sizes());
  ASSERT_TRUE(torch::isfinite(y).all().item<bool>());
  // Only real positions count (padding rows attend to nothing useful in either run).
  const torch::Tensor keep = c.batch.key_mask_BL.unsqueeze(-1).expand_as(y);
  const torch::Tensor diff = (y - ref.x0_BLC).masked_select(keep), base = ref.x0_BLC.masked_select(keep);
  const double rel = diff.norm().item<double>() / base.norm().item<double>();
  const double worst = diff.abs().max().item<double>() / base.abs().max().item<double>();
  std::printf("bf16 vs fp32 forward: relative error %.4g (norm), %.4g (max over max)\n", rel, worst);
  // bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%). Measured with dense attention in
  // bf16 CPU autocast against fp32 on this model (seeds 23-26): 0.6% in norm, 1.1% at worst (max
  // error over max value). 3% and 5% leave room for the flash kernel's accumulation order and an odd
  // MoE routing flip near a tie; a wrong mask, window or dtype gives errors of order 1.
  EXPECT_LT(rel, 0.03);
  EXPECT_LT(worst, 0.05);
  // The router's losses are fp32 statistics in both runs.
  EXPECT_EQ(out.aux_loss.scalar_type(), torch::kFloat);
  EXPECT_NEAR(out.aux_loss.item<double>(), ref.aux_loss.item<double>(), 0.01 * ref.aux_loss.item<double>());
}

TEST_F(TrainGpuTest, DpmSolverGenerationInBf16) {
  MDS_REQUIRE_CUDA();
  ForwardCase c = make_forward_case(dir_->file("tok"));
  const c10::Device cuda(c10::kCUDA, 0);
  c.model->to(cuda);
  Config config = Config::load("", {"data.max_src_len=64", "data.max_trg_len=16", "model.embed_dim=16",
                                    "model.dim=64", "model.layers=2", "model.heads=4", "model.ffn_dim=128",
                                    "model.time_embed_dim=32", "moe.experts=4", "moe.top_k=2",
                                    "attention.window=8", "attention.dilation=[1,2]", "train.device=cuda"});
  Tokenizer tok = Tokenizer::load(dir_->file("tok"));
  const Runtime runtime{cuda, resolve_precision(config, "train.precision", cuda)};
  TextGenerator generator(config, c.model, runtime, &tok);
  ASSERT_EQ(generator.precision(), Precision::bf16);  // train.precision = auto on a GPU
  for (const char* kind : {"dpm++2m", "dpm++3m"}) {
    SamplerOptions so;
    so.sampler = kind;
    so.steps = 10;
    so.cuda_graphs = true;
    const torch::Tensor x0 = generator.sample_x0(on(c.batch, cuda), so, at::make_generator<at::CPUGeneratorImpl>(4));
    EXPECT_EQ(x0.scalar_type(), torch::kFloat) << kind;
    EXPECT_TRUE(x0.is_cuda()) << kind;
    EXPECT_EQ(x0.sizes(), c.x_BLC.sizes()) << kind;
    EXPECT_TRUE(torch::isfinite(x0).all().item<bool>()) << kind;
    // The source is re-anchored: its positions hold the clean embeddings exactly.
    const torch::Tensor src = c.batch.trg_mask_BL.logical_not().unsqueeze(-1).expand_as(x0.cpu());
    torch::NoGradGuard no_grad;
    const torch::Tensor emb = c.model->embed(c.batch.ids_BL.to(cuda)).cpu();
    EXPECT_TRUE(torch::equal(x0.cpu().masked_select(src), emb.masked_select(src))) << kind;
    // The noise is drawn on the GPU from the seed: the same seed gives the same result. The steps
    // after the first replay a CUDA graph of the model call, which computes what the calls as issued do.
    const torch::Tensor again = generator.sample_x0(on(c.batch, cuda), so, at::make_generator<at::CPUGeneratorImpl>(4));
    EXPECT_TRUE(torch::equal(x0, again)) << kind;
    // Without the cast cache every model call casts the weights again: the same values, bit for bit.
    so.cast_cache = false;
    const torch::Tensor recast = generator.sample_x0(on(c.batch, cuda), so, at::make_generator<at::CPUGeneratorImpl>(4));
    EXPECT_TRUE(torch::equal(x0, recast)) << kind;
    so.cast_cache = true;
    so.cuda_graphs = false;
    const torch::Tensor issued = generator.sample_x0(on(c.batch, cuda), so, at::make_generator<at::CPUGeneratorImpl>(4));
    // (bf16 kernels; a stale input in the graph would differ by the whole scale of x0.)
    EXPECT_LT((x0 - issued).abs().max().item<double>(), 0.02 * issued.abs().max().item<double>()) << kind;
    EXPECT_TRUE(runtime::cuda_graphs_usable()) << kind << ": the capture failed (see the log)";
  }
  // And text out of it, as `generate` does (clamping on: the nearest-embedding search in fp32).
  auto pairs = read_jsonl(test::source_path(kPairs));
  std::vector<std::string> sources;
  for (std::size_t i = 0; i < 5; ++i) sources.push_back(pairs[i].src);
  generator.options().sampler.clamp = true;
  const std::vector<std::string> predictions = generator.generate(sources);
  EXPECT_EQ(predictions.size(), sources.size());
}

}  // namespace
}  // namespace mds
