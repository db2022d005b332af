// Benchmark (not a test): generation time of the default model with the default solver,
// DPM-Solver++ (2M) in 10 steps, per sentence and per long-document summary.
//
// Dimensions: B batch, L length (= S source region + T target region + 2: BOS and SEP), C embedding.
//
// The model is the project's default (src/core/config_schema.cpp) with RANDOM weights: the time of
// a sampling step does not depend on what the weights are (dropless MoE routing sends every token
// to its top-2 experts whatever they are). data.max_src_len / data.max_trg_len are set to the long
// case's regions so that model.max_positions (derived from them) holds its L.
//
// One run is TextGenerator::generate_ids (src/infer/generator.h), the generator's own batch call,
// on one batch packed with the generator's pack_options(): B random-id sources (full length, no
// padding) with the target region of T. It moves the batch to the device, embeds, runs sample()
// (the configured sampler, sample.sampler = dpm++2m, sample.steps = 10, time_uniform grid; noise
// from a CPU generator; the model call under the runtime's precision, bf16 on CUDA), takes the
// rounding head's argmax, copies the ids to the host and cuts each row at its first EOS / PAD. The
// model calls alone are timed apart ("model ms": the denoiser forward at the same shape, steps
// times), so the solver's own overhead shows. One warm-up run, then the median of --runs runs, each
// between device synchronisations.
//
// Cases (issue targets):
//   sentences  B = 100, S = 62, T = 64 (L = 128: BOS + 62 source + SEP + 64 target)  < 1 ms per sentence
//   summary    B = 1, S = 8192, T = 256 (L = 8450)                                    < 100 ms per summary
//
//   sampling_bench [--device auto|cpu|cuda] [--steps 10] [--sampler dpm++2m] [--runs 5]
//                  [--short-batch 100 --short-src 62 --short-trg 64]
//                  [--long-batch 1 --long-src 8192 --long-trg 256] [--precision auto|bf16|fp32]
//                  [--dim D --layers N ...] [--set KEY=VALUE]... [--json PATH]
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "bench/bench_model.h"
#include "bench/kernel_profile.h"
#include "core/cast_cache.h"
#include "core/config.h"
#include "data/batcher.h"
#include "data/example_source.h"
#include "data/special_tokens.h"
#include "infer/generator.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "model/model_options.h"
#include "runtime/cuda_graph.h"
#include "runtime/runtime.h"

namespace mds {

using data::Batch;
using data::InMemorySource;
using data::PackOptions;
using data::SpecialTokens;
using data::pack_batch;
using diffusion::SamplerOptions;
using infer::GeneratedBatch;
using infer::TextGenerator;
using model::BatchTensors;
using model::Denoiser;
using model::model_options_from_config;
using model::to_tensors;
using runtime::Precision;
using runtime::PrecisionScope;
using runtime::Runtime;
using runtime::resolve_runtime;

namespace {

struct Case {
  std::string name;
  int64_t batch = 0, src = 0, trg = 0;
  double target_ms = 0.0;  // per item
  std::string unit;        // "sentence" | "summary"
};

struct Options {
  std::string device = "auto";
  std::string precision = "auto";
  std::string sampler;  // empty = sample.sampler's default
  int64_t steps = 0;    // 0 = sample.steps' default
  int64_t runs = 5, warmup = 1;
  Case short_case{"sentences", 100, 62, 64, 1.0, "sentence"};
  Case long_case{"summary", 1, 8192, 256, 100.0, "summary"};
  // One short request, as `serve` often runs it: no target; where the host's launches dominate.
  Case request_case{"request", 1, 30, 32, 0.0, "request"};
  bench::ModelFlags model;
  uint64_t seed = 0;
  std::string json_path;  // none unless asked: bench/results holds the committed runs, named by machine
};

struct Result {
  Case c;
  int64_t L = 0;
  std::string status = "not run", detail;
  std::vector<double> run_ms, issued_ms, model_ms;  // issued: the same runs with sample.cuda_graphs = false
  double median_ms = -1.0, per_item_ms = -1.0, issued_median_ms = -1.0, model_median_ms = -1.0;
  int64_t generated_tokens = 0;  // target tokens before the first EOS / PAD, last run (random weights)
  // On CUDA, as the GPU timed its kernels (Kineto): one generation's busy time, and the model calls'.
  double generate_busy_ms = -1.0;
  bench::KernelProfile model_kernels;
};

// B random sources of S ids each (the generator's InMemorySource holds tokenized inputs).
InMemorySource random_sources(int64_t B, int64_t S, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(SpecialTokens::count, static_cast<int32_t>(vocab - 1));
  InMemorySource source;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> src(static_cast<size_t>(S));
    for (auto& id : src) id = token(rng);
    source.add(std::move(src), {});
  }
  return source;
}

// The model calls' kernels with the most device time, ms for all the calls of one generation.
nlohmann::json model_kernels_json(const bench::KernelProfile& k) {
  nlohmann::json out = nlohmann::json::array();
  for (std::size_t i = 0; i < k.kernels.size() && i < 25; ++i)
    out.push_back({{"kernel", k.kernels[i].name},
                   {"launched_by", k.kernels[i].op},
                   {"op_inputs", k.kernels[i].inputs},
                   {"calls", k.kernels[i].calls},
                   {"device_ms", 1000.0 * k.kernels[i].seconds}});
  return out;
}

Result run_case(TextGenerator& generator, const Case& c, const Options& opt) {
  Result r;
  r.c = c;
  r.L = c.src + c.trg + 2;
  const c10::Device device = generator.device();
  const int64_t steps = generator.options().sampler.steps;
  try {
    const InMemorySource source = random_sources(c.batch, c.src, opt.model.vocab, opt.seed + 1);
    PackOptions pack = generator.pack_options();
    pack.max_src_len = static_cast<int>(c.src);
    pack.max_trg_len = static_cast<int>(c.trg);
    std::vector<size_t> idx(static_cast<size_t>(c.batch));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    const Batch batch = pack_batch(source, idx, pack);

    auto generate_batch = [&](uint64_t seed) {
      const GeneratedBatch out = generator.generate_ids(batch, at::detail::createCPUGenerator(seed));
      int64_t tokens = 0;
      for (const auto& row : out.tokens) tokens += static_cast<int64_t>(row.size());
      return tokens;
    };
    // With CUDA graphs (whatever the length: sample.cuda_graphs_max_len is the default's choice, this
    // measures both), then without, in the same process.
    bool& graphs = generator.options().sampler.cuda_graphs;
    const bool graphs_default = graphs;
    int64_t& graphs_max_len = generator.options().sampler.cuda_graphs_max_len;
    const int64_t max_len_default = graphs_max_len;
    graphs_max_len = int64_t{1} << 40;
    for (std::vector<double>* times : {&r.run_ms, &r.issued_ms}) {
      graphs = times == &r.run_ms;
      for (int64_t w = 0; w < opt.warmup; ++w) generate_batch(opt.seed);
      for (int64_t run = 0; run < opt.runs; ++run) {
        bench::sync(device);
        const auto start = bench::Clock::now();
        const int64_t tokens = generate_batch(opt.seed + static_cast<uint64_t>(run) + 1);
        bench::sync(device);
        times->push_back(bench::ms_since(start));
        if (graphs) r.generated_tokens = tokens;
      }
    }
    graphs = graphs_default;
    graphs_max_len = max_len_default;

    // The model calls alone: `steps` forward passes at this shape (no solver, no packing).
    {
      torch::NoGradGuard no_grad;
      Denoiser& model = generator.model();
      BatchTensors bt = to_tensors(batch, device);
      const at::Tensor x_BLC = model->embed(bt.ids_BL);
      const at::Tensor t_B = at::full({c.batch}, 500.0, at::TensorOptions().dtype(at::kFloat).device(device));
      auto forward_steps = [&] {
        const core::CastCacheScope cast_once(generator.options().sampler.cast_cache);  // as generation has it
        PrecisionScope scope(generator.precision(), device);
        for (int64_t s = 0; s < steps; ++s) {
          const at::Tensor x0 = model->forward(x_BLC, t_B, bt.key_mask_BL, bt.global_mask_BL).x0_BLC;
          (void)x0;
        }
      };
      forward_steps();  // warm-up
      for (int64_t run = 0; run < opt.runs; ++run) {
        bench::sync(device);
        const auto start = bench::Clock::now();
        forward_steps();
        bench::sync(device);
        r.model_ms.push_back(bench::ms_since(start));
      }
      if (device.is_cuda()) {
        r.model_kernels = bench::record_kernels([&] {
          forward_steps();
          bench::sync(device);
        });
      }
    }
    if (device.is_cuda()) {
      // One generation as the default runs it (graphs up to sample.cuda_graphs_max_len): how much of
      // its time the GPU is busy.
      const bench::KernelProfile k = bench::record_kernels([&] {
        generate_batch(opt.seed);
        bench::sync(device);
      });
      if (k.ok()) r.generate_busy_ms = 1000.0 * k.busy_seconds;
    }
    r.median_ms = bench::median(r.run_ms);
    r.per_item_ms = r.median_ms / static_cast<double>(c.batch);
    r.model_median_ms = bench::median(r.model_ms);
    r.issued_median_ms = bench::median(r.issued_ms);
    r.status = "ok";
  } catch (const std::exception& e) {
    r.status = bench::is_oom(e) ? "oom" : "error";
    r.detail = bench::first_line(e);
    bench::empty_cache(device);
  }
  return r;
}

int bench_main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Generation time of the default model with DPM-Solver++ (10 steps): per sentence and per summary"};
  app.add_option("--device", opt.device, "auto (cuda when a GPU is visible), cpu or cuda");
  app.add_option("--precision", opt.precision, "auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}));
  app.add_option("--sampler", opt.sampler, "sample.sampler (default dpm++2m)");
  app.add_option("--steps", opt.steps, "sample.steps (0 = default 10)");
  app.add_option("--runs", opt.runs, "timed runs per case (the median is reported)");
  app.add_option("--warmup", opt.warmup, "untimed runs first");
  app.add_option("--short-batch", opt.short_case.batch, "sentences: batch");
  app.add_option("--short-src", opt.short_case.src, "sentences: source region S");
  app.add_option("--short-trg", opt.short_case.trg, "sentences: target region T");
  app.add_option("--long-batch", opt.long_case.batch, "summary: batch");
  app.add_option("--long-src", opt.long_case.src, "summary: source region S");
  app.add_option("--long-trg", opt.long_case.trg, "summary: target region T");
  app.add_option("--request-src", opt.request_case.src, "request (batch 1): source region S");
  app.add_option("--request-trg", opt.request_case.trg, "request (batch 1): target region T");
  bench::add_model_flags(app, opt.model);
  app.add_option("--seed", opt.seed, "seed of the weights, the ids and the noise");
  app.add_option("--json", opt.json_path, "also write the results as JSON here (bench/results/<name>_<gpu>.json for a committed run)");
  CLI11_PARSE(app, argc, argv);
  MDS_CHECK(opt.runs >= 1 && opt.warmup >= 0, "--runs must be >= 1 and --warmup >= 0");
  for (const Case* c : {&opt.short_case, &opt.long_case, &opt.request_case})
    MDS_CHECK(c->batch >= 1 && c->src >= 0 && c->trg >= 1, c->name, ": batch and target region must be >= 1");

  Config config = bench::model_config(opt.model);
  config.set("train.device=" + opt.device);
  config.set("train.precision=" + opt.precision);
  if (!opt.sampler.empty()) config.set("sample.sampler=" + opt.sampler);
  if (opt.steps > 0) bench::set_int(config, "sample.steps", opt.steps);
  // Room for every case's row in the position table (model.max_positions = 0 derives it).
  int64_t max_src = 0, max_trg = 0;
  for (const Case* c : {&opt.short_case, &opt.long_case, &opt.request_case}) {
    max_src = std::max(max_src, c->src);
    max_trg = std::max(max_trg, c->trg);
  }
  bench::set_int(config, "data.max_src_len", max_src);
  bench::set_int(config, "data.max_trg_len", max_trg);
  bench::set_int(config, "data.batch_tokens", std::max<int64_t>(config.get_int("data.batch_tokens"), max_src + max_trg + 2));
  config.validate();

  const Runtime runtime = resolve_runtime(config);
  const c10::Device device = runtime.device;
  const bool bf16 = runtime.precision == Precision::bf16;
  at::manual_seed(opt.seed);
  Denoiser model(model_options_from_config(config, opt.model.vocab));
  model->to(device);
  model->eval();
  TextGenerator generator(config, model, runtime);
  const SamplerOptions& so = generator.options().sampler;
  std::printf("sampling on %s, %s, random weights\n%s\nsampler %s, %lld steps (%s grid, %s time), %lld warm-up + "
              "median of %lld runs\n",
              bench::device_name(device).c_str(), bf16 ? "bf16 autocast" : "fp32", model->describe().c_str(),
              so.sampler.c_str(), static_cast<long long>(so.steps), so.skip_type.c_str(), so.time_mapping.c_str(),
              static_cast<long long>(opt.warmup), static_cast<long long>(opt.runs));
  std::fflush(stdout);

  std::vector<Result> results;
  for (const Case* c : {&opt.short_case, &opt.long_case, &opt.request_case}) {
    results.push_back(run_case(generator, *c, opt));
    const Result& r = results.back();
    if (r.status != "ok")
      std::fprintf(stderr, "%s: %s %s\n", c->name.c_str(), r.status.c_str(), r.detail.c_str());
  }

  std::printf("\n%-10s %5s %6s %6s %6s %10s %12s %13s %10s  %-18s %s\n", "case", "B", "S", "T", "L", "batch ms",
              "ms per item", "no graphs ms", "model ms", "target", "result");
  bool all_pass = true;
  nlohmann::json out = nlohmann::json::array();
  const auto num = bench::number_or_null;
  for (const Result& r : results) {
    const bool ok = r.status == "ok";
    const bool has_target = r.c.target_ms > 0;
    const bool pass = ok && r.per_item_ms < r.c.target_ms;
    if (has_target) all_pass = all_pass && pass;
    const std::string target =
        has_target ? "< " + bench::fixed(r.c.target_ms, r.c.target_ms < 10 ? 2 : 0) + " ms/" + r.c.unit : "-";
    std::printf("%-10s %5lld %6lld %6lld %6lld %10s %12s %13s %10s  %-18s %s\n", r.c.name.c_str(),
                static_cast<long long>(r.c.batch), static_cast<long long>(r.c.src), static_cast<long long>(r.c.trg),
                static_cast<long long>(r.L), ok ? bench::fixed(r.median_ms, 2).c_str() : r.status.c_str(),
                bench::fixed(r.per_item_ms, 3).c_str(), bench::fixed(r.issued_median_ms, 2).c_str(),
                bench::fixed(r.model_median_ms, 2).c_str(), target.c_str(),
                bench::pass_fail(has_target, pass).c_str());
    out.push_back({{"case", r.c.name},
                   {"batch", r.c.batch},
                   {"src_region", r.c.src},
                   {"trg_region", r.c.trg},
                   {"L", r.L},
                   {"status", r.status},
                   {"detail", r.detail},
                   {"run_ms", r.run_ms},
                   {"median_ms", num(r.median_ms)},
                   {"ms_per_item", num(r.per_item_ms)},
                   {"no_cuda_graphs_run_ms", r.issued_ms},
                   {"no_cuda_graphs_median_ms", num(r.issued_median_ms)},
                   {"cuda_graphs_usable", runtime::cuda_graphs_usable()},
                   {"model_only_ms", r.model_ms},
                   {"model_only_median_ms", num(r.model_median_ms)},
                   {"generated_tokens_last_run", r.generated_tokens},
                   {"generate_device_busy_ms", num(r.generate_busy_ms)},
                   {"model_only_device_busy_ms", r.model_kernels.ok() ? nlohmann::json(1000.0 * r.model_kernels.busy_seconds)
                                                                      : nlohmann::json()},
                   {"model_only_kernels", model_kernels_json(r.model_kernels)},
                   {"target_ms_per_item", has_target ? nlohmann::json(r.c.target_ms) : nlohmann::json()},
                   {"unit", r.c.unit},
                   {"result", bench::pass_fail(has_target, pass)}});
  }
  std::printf("batch ms: TextGenerator::generate_ids (to device, embed, %lld-step solver, rounding, ids to host, "
              "EOS cut; median), the model call of each step after the first a CUDA graph on a GPU; no graphs ms: "
              "the same with sample.cuda_graphs = false; model ms: the %lld denoiser calls alone, as issued\n",
              static_cast<long long>(so.steps), static_cast<long long>(so.steps));
  std::printf("reference (issue): DiffuSeq-v2 2.07 ms per sentence\ntargets: %s\n", all_pass ? "all PASS" : "some FAIL");
  // Where the device time goes (CUDA): busy time against the wall time, and the model calls' kernels.
  for (const Result& r : results) {
    if (r.generate_busy_ms < 0 && !r.model_kernels.ok()) continue;
    const bench::KernelProfile& k = r.model_kernels;
    std::printf("\n%s: the GPU is busy %s ms of a generation's %s ms (Kineto, one run with the default graphs);\n"
                "the %lld model calls alone: busy %s of %s ms; their kernels, the most device time first:\n",
                r.c.name.c_str(), bench::fixed(r.generate_busy_ms, 2).c_str(), bench::fixed(r.median_ms, 2).c_str(),
                static_cast<long long>(so.steps), bench::fixed(1000.0 * k.busy_seconds, 2).c_str(),
                bench::fixed(r.model_median_ms, 2).c_str());
    for (std::size_t i = 0; i < k.kernels.size() && i < 15; ++i)
      std::printf("  %-80s %5lld %9s  %s %s\n", k.kernels[i].name.substr(0, 80).c_str(),
                  static_cast<long long>(k.kernels[i].calls), bench::fixed(1000.0 * k.kernels[i].seconds, 3).c_str(),
                  k.kernels[i].op.c_str(), k.kernels[i].inputs.substr(0, 120).c_str());
    if (!k.ok()) std::printf("  (no kernels: %s)\n", k.error.c_str());
  }

  nlohmann::json params = {{"sampler", so.sampler},
                           {"steps", so.steps},
                           {"skip_type", so.skip_type},
                           {"time_mapping", so.time_mapping},
                           {"clamp", so.clamp},
                           {"runs", opt.runs},
                           {"warmup", opt.warmup},
                           {"precision", bf16 ? "bf16 autocast" : "fp32"},
                           {"weights", "random"},
                           {"seed", opt.seed},
                           {"timing", "median of runs; each between device synchronisations"}};
  nlohmann::json report = {{"benchmark", "sampling"},
                           {"machine", bench::machine_json(device)},
                           {"model", bench::model_json(config, opt.model, model)},
                           {"params", params},
                           {"results", out},
                           {"all_targets_pass", all_pass}};
  if (!opt.json_path.empty()) bench::write_json(opt.json_path, report);
  return 0;
}

}  // namespace
}  // namespace mds

int main(int argc, char** argv) {
  return mds::bench::guarded_main("sampling_bench", [&] { return mds::bench_main(argc, argv); });
}
