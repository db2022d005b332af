// Benchmark (not a test): training throughput of the default model, one whole optimizer step at a
// time, in tokens per second against the sequence length L; then the longest L that trains at
// batch 1.
//
// Dimensions: B batch, L length (= S source + T target region + 2: BOS and SEP), C embedding dim.
//
// The model is the project's defaults (src/core/config_schema.cpp: model.dim 768, 12 layers, 12
// heads, ffn 3072, moe 8 experts top-2, sparse attention window 256, dilation 1 in the lower half
// of the layers and 2 in the upper half, globals BOS+SEP) with random weights. The only keys set
// are those a run at these lengths needs: data.max_trg_len = T, data.max_src_len = S of the longest
// L (so model.max_positions, derived from them, covers it) and data.batch_tokens. A smaller model
// (smoke tests) comes from --dim/--layers/... or --set KEY=VALUE.
//
// Batches are synthetic but packed by pack_batch as the batcher does: B rows of BOS, S random
// source ids, SEP, a target region of T (T-1 random ids and EOS), key_mask all ones (no source
// padding), global_mask on BOS and SEP; T = min(data.max_trg_len = 128, L/2), B = max(1,
// --tokens-per-step / L) (32768 tokens per step on CUDA; 2048 on CPU, where this is a smoke test).
//
// One step is train_step() (src/train/train_step.h), the trainer's own, with the same batch each
// time: batch to the device, the t sampler's draw, forward process + denoiser + loss under the
// runtime's precision, the finiteness check, backward, the t sampler's update, gradient clipping,
// AdamW and the EMA update. The model, its optimizer state and the runtime come from
// make_train_state() and resolve_runtime(), as train() makes them. Warm-up steps, then --steps timed
// steps between two device synchronisations (fewer if --max-seconds runs out after at least 3);
// tokens/s = B * L * steps / seconds (padding included, as the trainer's).
//
// The longest L at batch 1: from --longest-start (32768), doubling, a fresh model per L (its
// position table must hold L), one warm-up and one timed step, until one runs out of memory.
//
// With --data DIR --tokenizer TOK (a prepared set and its tokenizer; data.* keys from --set), the
// lengths become the set's longest row and the tokens a step its data.batch_tokens, and a second run
// takes the set's own batches from the trainer's batcher: padded and real (not padding) tokens/s on its
// length mix, beside the synthetic figure at the same shapes.
//
//   train_step_bench [--device auto|cpu|cuda] [--lengths 512,2048,8192,16384,32768] [--data DIR --tokenizer TOK]
//                    [--tokens-per-step 32768 (CUDA) | 2048 (CPU)] [--warmup 3] [--steps 10] [--max-seconds 60]
//                    [--longest auto|on|off] [--longest-start 32768] [--longest-max 1048576]
//                    [--precision auto|bf16|fp32] [--dim D --layers N --heads H --ffn-dim F
//                    --experts E --top-k K --window W] [--set KEY=VALUE]... [--json PATH]
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "bench/bench_model.h"
#include "bench/kernel_profile.h"
#include "bench/op_profile.h"
#include "core/config.h"
#include "data/batcher.h"
#include "data/example_source.h"
#include "data/open_examples.h"
#include "data/source_canvas.h"
#include "data/tokenizer.h"
#include "data/special_tokens.h"
#include "runtime/runtime.h"
#include "train/train_step.h"

namespace mds {

using data::Batch;
using data::InMemorySource;
using data::PackOptions;
using data::SpecialTokens;
using data::TargetPadding;
using data::pack_batch;
using data::pack_options_from_config;
using runtime::Precision;
using runtime::Runtime;
using runtime::resolve_runtime;
using train::StepOptions;
using train::TrainState;
using train::make_train_state;
using train::step_options_from_config;
using train::train_step;

namespace {

struct Options {
  std::string device = "auto";
  std::vector<int64_t> lengths{512, 2048, 8192, 16384, 32768};
  int64_t tokens_per_step = 0;  // 0 = 32768 on CUDA, 2048 on CPU
  int64_t warmup = 3, steps = 10;
  double max_seconds = 60.0;  // per length, for the timed steps
  std::string longest = "auto";  // auto = on with CUDA, off on CPU
  int64_t longest_start = 32768, longest_max = 1 << 20;
  std::string precision = "auto";
  int64_t trg_len = 0;  // 0 = data.max_trg_len's default
  bench::ModelFlags model;
  uint64_t seed = 102;
  bool profile = false;
  std::string trace_dir;  // with --profile on CUDA: keep the Kineto traces here
  std::string data, tokenizer;  // real batches: a prepared directory (or jsonl) and its tokenizer
  std::string json_path;  // none unless asked: bench/results holds the committed runs, named by machine
};

// Issue targets: tokens/s at L.
struct Target {
  int64_t L;
  double tokens_per_s;
};
const std::vector<Target> kTargets = {{8192, 250000.0}, {32768, 200000.0}};

double target_at(int64_t L) {
  for (const Target& t : kTargets)
    if (t.L == L) return t.tokens_per_s;
  return -1.0;
}

// The shape of a row of length L: target region T and source region S (L = S + T + 2).
struct Shape {
  int64_t S = 0, T = 0;
};

Shape shape_for(int64_t L, int64_t max_trg_len) {
  MDS_CHECK(L >= 4, "length ", L, " is too short for BOS, SEP and a target region");
  Shape s;
  s.T = std::max<int64_t>(1, std::min(max_trg_len, L / 2));
  s.S = L - s.T - 2;
  return s;
}

// The target region asked for: --trg-len, else data.max_trg_len (default 128, or from --set).
int64_t base_trg_len(const Options& opt) {
  return opt.trg_len > 0 ? opt.trg_len : bench::model_config(opt.model).get_int("data.max_trg_len");
}

// The configuration: defaults, the model flags, --set, the runtime flags and the data keys that make
// room for L.
Config make_config(const Options& opt, int64_t longest_L) {
  Config c = bench::model_config(opt.model);
  c.set("train.device=" + opt.device);
  c.set("train.precision=" + opt.precision);
  const Shape shape = shape_for(longest_L, base_trg_len(opt));
  bench::set_int(c, "data.max_trg_len", shape.T);
  bench::set_int(c, "data.max_src_len", shape.S);
  bench::set_int(c, "data.batch_tokens", std::max<int64_t>(c.get_int("data.batch_tokens"), longest_L));
  c.validate();
  return c;
}

// B rows of length L packed as the batcher packs them, with random ids.
Batch synthetic_batch(const Config& c, const Options& opt, int64_t B, int64_t L, uint64_t seed) {
  const int64_t vocab = opt.model.vocab;
  const Shape shape = shape_for(L, base_trg_len(opt));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(SpecialTokens::count, static_cast<int32_t>(vocab - 1));
  InMemorySource source;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> src(static_cast<size_t>(shape.S)), trg(static_cast<size_t>(shape.T - 1));
    for (auto& id : src) id = token(rng);
    for (auto& id : trg) id = token(rng);
    source.add(std::move(src), std::move(trg));
  }
  PackOptions pack = pack_options_from_config(c);
  pack.max_src_len = static_cast<int>(shape.S);
  pack.max_trg_len = static_cast<int>(shape.T);
  pack.trg_pad = TargetPadding::max;
  std::vector<size_t> examples(static_cast<size_t>(B));
  for (size_t i = 0; i < examples.size(); ++i) examples[i] = i;
  Batch batch = pack_batch(source, examples, pack);
  MDS_CHECK(batch.length == L, "internal error: packed length ", batch.length, " != ", L);
  return batch;
}

// One step of the trainer's own; returns its skip flag (on the device: read after the timing).
torch::Tensor step_once(TrainState& t, const StepOptions& so, const Batch& batch) {
  return train_step(t, [&] { return batch; }, so, at::detail::getDefaultCPUGenerator()).skipped;
}

int64_t count_true(const std::vector<torch::Tensor>& flags) {
  return flags.empty() ? 0 : torch::stack(flags).sum().item<int64_t>();
}

// Where a step's time goes: `steps` steps with the phases timed on the host (what issuing them costs)
// and `steps` more with a device synchronisation at each phase's end (what they cost in all); ms per
// step. Then `steps` more with every op's host self time recorded (apart: the recording has a cost),
// and on a GPU `steps` more under the Kineto profiler: each op's device self time is the time of the
// kernels it launched, as the GPU timed them (bench/kernel_profile.h). Where Kineto gives nothing, CUDA
// events around every op stand in (they also count the GPU's waits for the host).
struct Profile {
  std::vector<std::pair<std::string, double>> host_ms, synced_ms;
  std::vector<bench::OpStat> ops;  // per step: calls and self seconds
  std::string device_times;        // "kineto", "events" (Kineto failed: why in kernels.error) or "" (CPU)
  bench::KernelProfile kernels;    // per step
};

Profile profile_steps(TrainState& t, const StepOptions& so, const Batch& batch, int64_t steps,
                      const std::string& trace_dir) {
  Profile p;
  for (const bool sync : {false, true}) {
    train::PhaseClock clock;
    clock.sync = sync;
    clock.device = t.runtime.device;
    StepOptions timed = so;
    timed.clock = &clock;
    bench::sync(t.runtime.device);
    for (int64_t i = 0; i < steps; ++i) {
      clock.start();
      step_once(t, timed, batch);
    }
    bench::sync(t.runtime.device);
    for (auto& [phase, seconds] : clock.seconds)
      (sync ? p.synced_ms : p.host_ms).emplace_back(phase, 1000.0 * seconds / static_cast<double>(steps));
  }
  const auto record = [&](bool device_times) {
    bench::OpProfile ops;
    ops.start(device_times);
    for (int64_t i = 0; i < steps; ++i) step_once(t, so, batch);
    bench::sync(t.runtime.device);
    ops.stop();
    return ops.table();
  };
  p.ops = record(false);
  if (t.runtime.device.is_cuda()) {
    std::map<std::string, double> device;
    p.kernels = bench::record_kernels(
        [&] {
          for (int64_t i = 0; i < steps; ++i) step_once(t, so, batch);
          bench::sync(t.runtime.device);
        },
        trace_dir.empty() ? std::string()
                          : trace_dir + "/train_step_L" + std::to_string(batch.length) + "_B" +
                                std::to_string(batch.batch_size) + ".json");
    if (p.kernels.ok()) {
      p.device_times = "kineto";
      device = p.kernels.by_op;
      const double n = static_cast<double>(steps);
      for (bench::KernelStat& k : p.kernels.kernels) k.calls /= steps, k.seconds /= n;
      p.kernels.busy_seconds /= n;
      p.kernels.span_seconds /= n;
    } else {
      p.device_times = "events";
      for (const bench::OpStat& op : record(true)) device[op.name] = op.device_self_seconds;
    }
    for (bench::OpStat& op : p.ops) op.device_self_seconds = device.count(op.name) != 0 ? device[op.name] : 0.0;
  }
  for (bench::OpStat& op : p.ops) {
    op.calls /= steps;
    op.self_seconds /= static_cast<double>(steps);
    op.device_self_seconds /= static_cast<double>(steps);
  }
  return p;
}

// The ops with the most host time.
nlohmann::json ops_json(std::vector<bench::OpStat> ops, std::size_t top) {
  // The most host time and the most device time: the union of both lists' first `top`.
  std::vector<bench::OpStat> by_device = ops;
  std::sort(by_device.begin(), by_device.end(),
            [](const bench::OpStat& a, const bench::OpStat& b) { return a.device_self_seconds > b.device_self_seconds; });
  if (ops.size() > top) ops.resize(top);
  for (std::size_t i = 0; i < by_device.size() && i < top; ++i)
    if (std::none_of(ops.begin(), ops.end(), [&](const bench::OpStat& o) { return o.name == by_device[i].name; }))
      ops.push_back(by_device[i]);
  nlohmann::json out = nlohmann::json::array();
  for (std::size_t i = 0; i < ops.size(); ++i)
    out.push_back({{"op", ops[i].name},
                   {"calls_per_step", ops[i].calls},
                   {"host_self_ms", 1000.0 * ops[i].self_seconds},
                   {"device_self_ms", 1000.0 * ops[i].device_self_seconds}});
  return out;
}

// The kernels with the most device time.
nlohmann::json kernels_json(const bench::KernelProfile& k, std::size_t top) {
  nlohmann::json out = nlohmann::json::array();
  for (std::size_t i = 0; i < k.kernels.size() && i < top; ++i)
    out.push_back({{"kernel", k.kernels[i].name},
                   {"launched_by", k.kernels[i].op},
                   {"op_inputs", k.kernels[i].inputs},
                   {"calls_per_step", k.kernels[i].calls},
                   {"device_ms", 1000.0 * k.kernels[i].seconds}});
  return out;
}

struct Run {
  int64_t L = 0, B = 0, S = 0, T = 0;  // T: target region, S: source region
  std::string status = "not run";  // ok | oom | error
  std::string detail;
  int64_t steps = 0, skipped = 0;  // timed steps; non-finite losses among all steps
  int64_t tokens = 0;              // padded tokens of the timed steps
  Profile profile;                 // with --profile
  std::string batches = "synthetic";  // or "data": the real set's batches, as the trainer draws them
  double real_tokens_per_s = -1.0;     // not padding (data)
  double seconds = 0.0, tokens_per_s = -1.0, step_ms = -1.0, peak_gib = -1.0;
};

nlohmann::json to_json(const Run& r) {
  const auto num = bench::number_or_null;
  return {{"L", r.L},
          {"batch", r.B},
          {"tokens_per_step", r.B * r.L},
          {"src_region", r.S},
          {"trg_region", r.T},
          {"status", r.status},
          {"detail", r.detail},
          {"timed_steps", r.steps},
          {"skipped_steps", r.skipped},
          {"seconds", r.seconds},
          {"tokens_per_s", num(r.tokens_per_s)},
          {"step_ms", num(r.step_ms)},
          {"peak_allocated_gib", num(r.peak_gib)},
          {"batches", r.batches},
          {"real_tokens_per_s", num(r.real_tokens_per_s)},
          {"profile_host_ms", r.profile.host_ms},
          {"profile_synced_ms", r.profile.synced_ms},
          {"profile_ops", ops_json(r.profile.ops, 40)},
          {"profile_op_classes", ops_json(bench::by_class(r.profile.ops), 100)},
          {"profile_device_times", r.profile.device_times},
          {"profile_device_error", r.profile.kernels.error},
          {"profile_device_busy_ms", 1000.0 * r.profile.kernels.busy_seconds},
          {"profile_kernels", kernels_json(r.profile.kernels, 30)}};
}

// `warmup` untimed steps, then up to `steps` timed ones between two device synchronisations (fewer when
// --max-seconds runs out after 3) on the batches `next_batch` gives: fills r's timing fields, or its
// status "oom" / "error". Gradients and cached blocks go before the next measurement.
void time_steps(TrainState& t, const StepOptions& so, const std::function<Batch()>& next_batch, int64_t warmup,
                int64_t steps, const Options& opt, Run& r) {
  const c10::Device device = t.runtime.device;
  const at::Generator gen = at::detail::getDefaultCPUGenerator();
  try {
    std::vector<torch::Tensor> skipped;  // device flags, read after the timing
    bench::sync(device);
    bench::reset_peak_memory(device);
    for (int64_t i = 0; i < warmup; ++i) skipped.push_back(train_step(t, next_batch, so, gen).skipped);
    bench::sync(device);
    int64_t tokens = 0, real = 0;
    const auto start = bench::Clock::now();
    for (int64_t i = 0; i < steps; ++i) {
      const train::StepResult s = train_step(t, next_batch, so, gen);
      skipped.push_back(s.skipped);
      tokens += s.tokens;
      real += s.real_tokens;
      ++r.steps;
      if (r.steps >= 3 && bench::ms_since(start) > 1000.0 * opt.max_seconds) break;
    }
    bench::sync(device);
    r.seconds = bench::ms_since(start) / 1000.0;
    r.skipped = count_true(skipped);
    r.tokens = tokens;
    r.tokens_per_s = static_cast<double>(tokens) / std::max(1e-9, r.seconds);
    r.real_tokens_per_s = static_cast<double>(real) / std::max(1e-9, r.seconds);
    r.step_ms = 1000.0 * r.seconds / static_cast<double>(std::max<int64_t>(1, r.steps));
    const double peak_mib = bench::cuda_allocated_mib(device, /*peak=*/true);
    r.peak_gib = peak_mib < 0 ? -1.0 : peak_mib / 1024.0;
    r.status = "ok";
  } catch (const std::exception& e) {
    r.status = bench::is_oom(e) ? "oom" : "error";
    r.detail = bench::first_line(e);
  }
  t.optimizer->zero_grad();
  bench::empty_cache(device);
}

// Synthetic batches of B rows of length L (the same batch every step).
Run measure(TrainState& t, const Config& c, const Options& opt, int64_t L, int64_t B, int64_t warmup, int64_t steps) {
  const StepOptions so = step_options_from_config(c);
  Run r;
  r.L = L;
  r.B = B;
  Batch batch;
  try {
    batch = synthetic_batch(c, opt, B, L, opt.seed + static_cast<uint64_t>(L));
  } catch (const std::exception& e) {
    r.status = "error";
    r.detail = bench::first_line(e);
    return r;
  }
  r.S = batch.src_region;
  r.T = batch.trg_region;
  time_steps(t, so, [&] { return batch; }, warmup, steps, opt, r);
  if (opt.profile && r.status == "ok") {
    r.profile = profile_steps(t, so, batch, std::min<int64_t>(r.steps, 10), opt.trace_dir);
    t.optimizer->zero_grad();
    bench::empty_cache(t.runtime.device);
  }
  return r;
}

// Steps on a real data set's batches, drawn in the trainer's order by its batcher: the shapes and the
// padding of the real length mix. B is shown as the mean padded tokens a step.
Run measure_data(TrainState& t, const Config& c, data::Batcher& batcher, const Options& opt) {
  Run r;
  r.batches = "data";
  time_steps(t, step_options_from_config(c), [&] { return batcher.next(); }, opt.warmup, opt.steps, opt, r);
  r.B = r.tokens / std::max<int64_t>(1, r.steps);
  return r;
}

int bench_main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Training throughput (tokens/s) of the default model against L, and the longest L at batch 1"};
  app.add_option("--device", opt.device, "auto (cuda when a GPU is visible), cpu or cuda");
  app.add_option("--lengths", opt.lengths, "sequence lengths L")->delimiter(',');
  app.add_option("--tokens-per-step", opt.tokens_per_step, "B = max(1, this / L) (0 = 32768 on CUDA, 2048 on CPU)");
  app.add_option("--warmup", opt.warmup, "untimed steps per length");
  app.add_option("--steps", opt.steps, "timed steps per length");
  app.add_option("--max-seconds", opt.max_seconds,
                 "stop timing a length after this many seconds (at least 3 steps are timed)");
  app.add_option("--longest", opt.longest, "search the longest L at batch 1: auto (with CUDA), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--longest-start", opt.longest_start, "first L of the search (doubling)");
  app.add_option("--longest-max", opt.longest_max, "stop the search here");
  app.add_option("--precision", opt.precision, "auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}));
  bench::add_model_flags(app, opt.model);
  app.add_option("--trg-len", opt.trg_len, "target region T (0 = data.max_trg_len's default, 128; at most L/2)");
  app.add_option("--seed", opt.seed, "seed of the weights, the ids and the noise");
  app.add_option("--json", opt.json_path, "also write the results as JSON here (bench/results/<name>_<gpu>.json for a committed run)");
  app.add_option("--data", opt.data,
                 "also time steps on a real data set's batches (a prepared directory or jsonl, packed as the "
                 "trainer packs them: data.* from --set), beside synthetic batches of its longest row");
  app.add_option("--tokenizer", opt.tokenizer, "the tokenizer directory of --data");
  app.add_flag("--profile", opt.profile,
               "after each length's timing, time the step's phases (data, to device, forward, backward, clip, "
               "optimizer, EMA): issued on the host, and with a device synchronisation after each; then every op's "
               "host time, and on CUDA its kernels' time as the GPU measured it (Kineto)");
  app.add_option("--trace-dir", opt.trace_dir,
                 "with --profile on CUDA: keep each length's Kineto trace here (Chrome trace JSON: Perfetto opens it)")
      ->check(CLI::ExistingDirectory);
  CLI11_PARSE(app, argc, argv);
  MDS_CHECK(!opt.lengths.empty(), "--lengths is empty");
  MDS_CHECK(opt.steps >= 1 && opt.warmup >= 0, "--steps must be >= 1 and --warmup >= 0");

  std::unique_ptr<data::Tokenizer> tokenizer;
  std::unique_ptr<data::ExampleSource> real_data;
  if (!opt.data.empty()) {
    // The synthetic comparison at the real set's shapes: its longest row, its tokens a step.
    MDS_CHECK(!opt.tokenizer.empty(), "--data needs --tokenizer");
    tokenizer = std::make_unique<data::Tokenizer>(data::Tokenizer::load(opt.tokenizer));
    real_data = data::open_examples(opt.data, *tokenizer);
    opt.model.vocab = tokenizer->vocab_size();
    const Config user = bench::model_config(opt.model);
    const PackOptions pack = pack_options_from_config(user);
    opt.trg_len = pack.max_trg_len;
    opt.lengths = {data::longest_row(pack)};
    opt.tokens_per_step = user.get_int("data.batch_tokens");
  }
  const int64_t max_L = *std::max_element(opt.lengths.begin(), opt.lengths.end());
  const Config config = make_config(opt, max_L);
  const Runtime runtime = resolve_runtime(config);
  const c10::Device device = runtime.device;
  const bool bf16 = runtime.precision == Precision::bf16;
  if (opt.tokens_per_step <= 0) opt.tokens_per_step = device.is_cuda() ? 32768 : 2048;
  const bool search = opt.longest == "on" || (opt.longest == "auto" && device.is_cuda());
  at::manual_seed(opt.seed);

  auto trainee = std::make_unique<TrainState>(make_train_state(config, opt.model.vocab, runtime));
  std::printf("training step on %s, %s, %s\n%s\n", bench::device_name(device).c_str(),
              bf16 ? "bf16 autocast" : "fp32", torch::cuda::is_available() ? "CUDA visible" : "no GPU",
              trainee->model->describe().c_str());
  std::printf("%lld warm-up + %lld timed steps per length, B = max(1, %lld / L)\n",
              static_cast<long long>(opt.warmup), static_cast<long long>(opt.steps),
              static_cast<long long>(opt.tokens_per_step));
  std::fflush(stdout);

  std::vector<Run> runs;
  for (const int64_t L : opt.lengths) {
    const int64_t B = std::max<int64_t>(1, opt.tokens_per_step / L);
    runs.push_back(measure(*trainee, config, opt, L, B, opt.warmup, opt.steps));
    const Run& r = runs.back();
    std::printf("  L=%lld B=%lld: %s%s\n", static_cast<long long>(L), static_cast<long long>(B),
                r.status == "ok" ? (bench::fixed(r.tokens_per_s, 0) + " tok/s").c_str() : r.status.c_str(),
                r.detail.empty() ? "" : (": " + r.detail).c_str());
    std::fflush(stdout);
  }
  if (real_data) {
    const data::PackOptions pack = pack_options_from_config(config);
    // data.target_canvas: the targets as training reads them.
    const auto canvas = data::on_canvas(*real_data, pack, config.get_float("data.canvas_rewrite_below"),
                                        config.get_bool("data.canvas_rewrite_compact"));
    data::Batcher batcher(canvas ? *canvas : *real_data, pack, data::batch_plan_options_from_config(config, true));
    runs.push_back(measure_data(*trainee, config, batcher, opt));
    const Run& r = runs.back();
    std::printf("  %s (%zu examples): %s padded tok/s, %s not padding, %.0f padded tokens a step%s\n", opt.data.c_str(),
                real_data->size(), bench::fixed(r.tokens_per_s, 0).c_str(), bench::fixed(r.real_tokens_per_s, 0).c_str(),
                static_cast<double>(r.B), r.detail.empty() ? "" : (": " + r.detail).c_str());
    if (r.status == "ok" && runs.front().status == "ok")
      std::printf("  real / synthetic padded tok/s: %.2f\n", r.tokens_per_s / runs.front().tokens_per_s);
    std::fflush(stdout);
  }
  const nlohmann::json model_json = bench::model_json(config, opt.model, trainee->model);
  trainee.reset();
  bench::empty_cache(device);

  // The longest L that trains at batch 1.
  std::vector<Run> search_runs;
  int64_t longest = 0;
  std::string stop_reason = "not searched";
  if (search) {
    stop_reason = "reached --longest-max";
    for (int64_t L = opt.longest_start; L <= opt.longest_max; L *= 2) {
      // A length the table already trained at batch 1 needs no second model.
      const auto done = std::find_if(runs.begin(), runs.end(),
                                     [&](const Run& r) { return r.L == L && r.B == 1 && r.status == "ok"; });
      if (done != runs.end()) {
        longest = L;
        std::printf("  longest search L=%lld: trained at batch 1 above\n", static_cast<long long>(L));
        continue;
      }
      Run r;
      try {
        const Config c = make_config(opt, L);
        TrainState t = make_train_state(c, opt.model.vocab, runtime);
        r = measure(t, c, opt, L, 1, 1, 1);
      } catch (const std::exception& e) {  // the model itself did not fit
        r.L = L;
        r.B = 1;
        r.status = bench::is_oom(e) ? "oom" : "error";
        r.detail = bench::first_line(e);
      }
      bench::empty_cache(device);
      search_runs.push_back(r);
      std::printf("  longest search L=%lld: %s%s\n", static_cast<long long>(L),
                  r.status == "ok" ? (bench::fixed(r.tokens_per_s, 0) + " tok/s").c_str() : r.status.c_str(),
                  r.detail.empty() ? "" : (": " + r.detail).c_str());
      std::fflush(stdout);
      if (r.status != "ok") {
        stop_reason = r.status == "oom" ? "out of memory at L=" + std::to_string(L)
                                        : "error at L=" + std::to_string(L) + ": " + r.detail;
        break;
      }
      longest = L;
    }
  }

  if (opt.profile) {
    std::printf("\nwhere a step's time goes (ms per step; host: issuing the phase, synced: until the device is done)\n");
    for (const Run& r : runs) {
      if (r.profile.host_ms.empty()) continue;
      std::printf("L=%lld B=%lld, step %s ms\n", static_cast<long long>(r.L), static_cast<long long>(r.B),
                  bench::fixed(r.step_ms, 1).c_str());
      std::printf("  %-12s %9s %9s\n", "phase", "host", "synced");
      double host_sum = 0, synced_sum = 0;
      for (std::size_t i = 0; i < r.profile.host_ms.size(); ++i) {
        const double synced = i < r.profile.synced_ms.size() ? r.profile.synced_ms[i].second : -1.0;
        host_sum += r.profile.host_ms[i].second;
        synced_sum += synced;
        std::printf("  %-12s %9s %9s\n", r.profile.host_ms[i].first.c_str(),
                    bench::fixed(r.profile.host_ms[i].second, 2).c_str(), bench::fixed(synced, 2).c_str());
      }
      std::printf("  %-12s %9s %9s\n", "sum", bench::fixed(host_sum, 2).c_str(), bench::fixed(synced_sum, 2).c_str());
      int64_t calls = 0;
      double self = 0.0, device = 0.0;
      for (const auto& op : r.profile.ops) calls += op.calls, self += op.self_seconds, device += op.device_self_seconds;
      std::printf("  ops: %lld a step, host self %s ms (recorded apart: the recording adds to it)\n",
                  static_cast<long long>(calls), bench::fixed(1000.0 * self, 2).c_str());
      const bench::KernelProfile& k = r.profile.kernels;
      if (r.profile.device_times == "kineto")
        std::printf("  device: busy %s ms a step of the step's %s ms (kernels, copies and fills as the GPU timed them,\n"
                    "  Kineto; the rest the GPU waits for the host); device ms below: the kernels each op launched\n",
                    bench::fixed(1000.0 * k.busy_seconds, 2).c_str(), bench::fixed(r.step_ms, 2).c_str());
      else if (r.profile.device_times == "events")
        std::printf("  device self %s ms from CUDA events around each op, which also count the GPU's waits for the\n"
                    "  host (only their order is useful; Kineto gave nothing: %s)\n",
                    bench::fixed(1000.0 * device, 2).c_str(), k.error.c_str());
      std::printf("  the most host time, then the most device time:\n");
      std::printf("    %-44s %6s %9s %9s\n", "op class", "calls", "host ms", "device ms");
      for (const bench::OpStat& c : bench::by_class(r.profile.ops))
        std::printf("    %-44s %6lld %9s %9s\n", c.name.c_str(), static_cast<long long>(c.calls),
                    bench::fixed(1000.0 * c.self_seconds, 3).c_str(), bench::fixed(1000.0 * c.device_self_seconds, 3).c_str());
      std::printf("    --\n    %-44s %6s %9s %9s\n", "op", "calls", "host ms", "device ms");
      std::vector<bench::OpStat> by_device = r.profile.ops;
      std::sort(by_device.begin(), by_device.end(),
                [](const bench::OpStat& a, const bench::OpStat& b) { return a.device_self_seconds > b.device_self_seconds; });
      const std::vector<bench::OpStat>* lists[] = {&r.profile.ops, &by_device};
      for (const auto* list : lists) {
        for (std::size_t i = 0; i < list->size() && i < 20; ++i) {
          const bench::OpStat& op = (*list)[i];
          if (list == &by_device && op.device_self_seconds <= 0) break;
          std::printf("    %-44s %6lld %9s %9s\n", op.name.substr(0, 44).c_str(), static_cast<long long>(op.calls),
                      bench::fixed(1000.0 * op.self_seconds, 3).c_str(), bench::fixed(1000.0 * op.device_self_seconds, 3).c_str());
        }
        std::printf("    --\n");
      }
      if (k.ok()) {
        std::printf("    %-70s %6s %9s  %s\n", "kernel (the most device time)", "calls", "device ms", "launched by");
        for (std::size_t i = 0; i < k.kernels.size() && i < 25; ++i)
          std::printf("    %-70s %6lld %9s  %s %s\n", k.kernels[i].name.substr(0, 70).c_str(),
                      static_cast<long long>(k.kernels[i].calls), bench::fixed(1000.0 * k.kernels[i].seconds, 3).c_str(),
                      k.kernels[i].op.c_str(), k.kernels[i].inputs.substr(0, 120).c_str());
        std::printf("    --\n");
      }
    }
  }

  std::printf("\n%7s %4s %10s %13s %9s %9s  %-14s %s\n", "L", "B", "step ms", "tokens/s", "peak GiB", "steps",
              "target", "result");
  bool all_pass = true;
  int checked = 0;
  nlohmann::json results = nlohmann::json::array();
  for (const Run& r : runs) {
    const double target = target_at(r.L);
    std::string verdict = "-";
    if (target > 0) {
      const bool pass = r.status == "ok" && r.tokens_per_s >= target;
      verdict = bench::pass_fail(true, pass);
      all_pass = all_pass && pass;
      ++checked;
    }
    // A data run's row: "data" and its mean padded tokens a step in place of L and B.
    std::printf("%7s %4lld %10s %13s %9s %9lld  %-14s %s\n", r.batches == "data" ? "data" : std::to_string(r.L).c_str(),
                static_cast<long long>(r.B), r.status == "ok" ? bench::fixed(r.step_ms, 1).c_str() : r.status.c_str(),
                bench::fixed(r.tokens_per_s, 0).c_str(), bench::fixed(r.peak_gib, 2).c_str(),
                static_cast<long long>(r.steps), target > 0 ? (">= " + bench::fixed(target / 1000, 0) + "k").c_str() : "-",
                verdict.c_str());
    nlohmann::json j = to_json(r);
    j["target_tokens_per_s"] = target > 0 ? nlohmann::json(target) : nlohmann::json(nullptr);
    j["result"] = verdict;
    results.push_back(j);
  }
  if (search) {
    const Run* at_longest = nullptr;
    for (const Run& r : search_runs)
      if (r.L == longest && r.status == "ok") at_longest = &r;
    std::printf("longest L at batch 1: %s (%s)%s\n", longest > 0 ? std::to_string(longest).c_str() : "none",
                stop_reason.c_str(),
                at_longest ? (": " + bench::fixed(at_longest->tokens_per_s, 0) + " tok/s" +
                              (at_longest->peak_gib >= 0 ? ", peak " + bench::fixed(at_longest->peak_gib, 1) + " GiB"
                                                         : std::string()))
                                 .c_str()
                           : "");
  }
  std::printf("reference (issue): DiffuSeq with fused dense attention 254k tok/s at L=1024, 137k at L=8192\n");
  std::printf("targets: %s\n", checked == 0 ? "none measured" : all_pass ? "all PASS" : "some FAIL");

  nlohmann::json search_json = nlohmann::json::array();
  for (const Run& r : search_runs) search_json.push_back(to_json(r));
  nlohmann::json params = {{"lengths", opt.lengths},     {"tokens_per_step", opt.tokens_per_step},
                           {"warmup", opt.warmup},       {"steps", opt.steps},
                           {"max_seconds", opt.max_seconds}, {"precision", bf16 ? "bf16 autocast" : "fp32"},
                           {"seed", opt.seed},
                           {"grad_clip", config.get_float("train.grad_clip")},
                           {"ema_decay", config.get_float("train.ema_decay")},
                           {"t_sampler", config.get_string("diffusion.t_sampler")},
                           {"trg_region", "min(" + std::to_string(base_trg_len(opt)) + ", L/2): see results"}};
  nlohmann::json targets = nlohmann::json::array();
  for (const Target& t : kTargets) targets.push_back({{"L", t.L}, {"tokens_per_s", t.tokens_per_s}});
  nlohmann::json report = {{"benchmark", "train_step"},
                           {"machine", bench::machine_json(device)},
                           {"model", model_json},
                           {"params", params},
                           {"targets", targets},
                           {"results", results},
                           {"longest_batch1",
                            {{"searched", search},
                             {"L", longest > 0 ? nlohmann::json(longest) : nlohmann::json(nullptr)},
                             {"stop_reason", stop_reason},
                             {"runs", search_json}}},
                           {"all_targets_pass", checked > 0 && all_pass}};
  if (!opt.json_path.empty()) bench::write_json(opt.json_path, report);
  return 0;
}

}  // namespace
}  // namespace mds

int main(int argc, char** argv) {
  return mds::bench::guarded_main("train_step_bench", [&] { return mds::bench_main(argc, argv); });
}
