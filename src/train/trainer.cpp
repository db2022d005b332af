// The training loop (docs/architecture.md, "Training"): set-up, resume, the loop and its policies
// (logging, validation, early stopping, checkpoints, non-finite steps). One step is train_step();
// validation is validation.cpp. Every random draw (t, noise, dropout, jitter) comes from LibTorch's
// default CPU generator, whose state is saved in each checkpoint together with the data position, so
// a resumed run repeats exactly what an uninterrupted one would do; in a data-parallel run (or with
// dist.seed_per_batch) it is reseeded for every micro-batch from (seed, step, place in the global
// batch), so that the run does not depend on the number of processes.
#include "train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>

#include "core/crash_point.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_integer.h"
#include "core/log.h"
#include "data/batcher.h"
#include "data/open_examples.h"
#include "data/source_canvas.h"
#include "data/tokenizer.h"
#include "io/checkpoint.h"
#include "io/checkpoint_writer.h"
#include "metrics/eval_report.h"
#include "model/state_dict.h"
#include "runtime/device.h"
#include "runtime/distributed.h"
#include "runtime/stop_signal.h"
#include "train/expert_exchange.h"
#include "train/expert_shards.h"
#include "train/metrics_log.h"
#include "train/train_step.h"
#include "train/validation.h"

namespace mds::train {

using data::Batcher;
using data::ExampleSource;
using data::Tokenizer;
using data::batch_plan_options_from_config;
using data::open_examples;
using data::pack_options_from_config;
using io::CheckpointContent;
using io::latest_checkpoint;
using io::prune_checkpoints;
using io::read_checkpoint;
using model::load_state_dict;
using model::state_dict;
using runtime::Runtime;
using runtime::resolve_runtime;
using runtime::seed_everything;
using runtime::to_string;

namespace {

using Clock = std::chrono::steady_clock;

// Steps between a rank's wish to stop (signal, time budget) and the ranks' agreed stop: the host may
// queue that many steps ahead of the GPU (Collective::any_after).
constexpr int kStopLag = 2;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The train.* keys of the loop's policies.
struct LoopOptions {
  int64_t total_steps = 0, log_every = 0, eval_every = 0, eval_samples = 0, save_every = 0, keep_last = 0;
  int64_t max_bad_steps = 0, early_stop_patience = 0;
  double max_seconds = 0.0;  // 0 = no time budget
  std::string early_stop_metric;  // "" = off; "loss" or a metric of the generated samples
  std::string best_metric;        // what picks best/: "loss" or a metric of the generated samples
};

LoopOptions loop_options_from_config(const Config& c) {
  LoopOptions o;
  o.total_steps = c.get_int("train.steps");
  o.log_every = c.get_int("train.log_every");
  o.eval_every = c.get_int("train.eval_every");
  o.eval_samples = c.get_int("train.eval_samples");
  o.save_every = c.get_int("train.save_every");
  o.keep_last = c.get_int("train.keep_last");
  o.max_bad_steps = c.get_int("train.max_bad_steps");
  o.early_stop_patience = c.get_int("train.early_stop_patience");
  o.early_stop_metric = c.get_string("train.early_stop_metric");
  o.best_metric = c.get_string("train.best_metric");
  o.max_seconds = 60.0 * c.get_float("train.max_minutes");
  return o;
}

// Running sums of the logged terms between two log lines (steps that were not skipped).
struct LogWindow {
  double loss = 0, mse = 0, rounding = 0, prior = 0, x0_ce = 0, length = 0, rewrite = 0, absorb = 0, aux = 0, z = 0, grad_norm = 0;
  int64_t steps = 0, tokens = 0, real_tokens = 0, skipped = 0, dropped = 0;
  Clock::time_point start = Clock::now();

  // One step's values, indexed by LogField.
  void add(const float* v) {
    loss += v[kLogLoss], mse += v[kLogMse], rounding += v[kLogRounding], prior += v[kLogPrior];
    x0_ce += v[kLogX0Ce], length += v[kLogLength], rewrite += v[kLogRewrite], absorb += v[kLogAbsorb], aux += v[kLogMoeAux];
    z += v[kLogMoeZ], grad_norm += v[kLogGradNorm];
    dropped += static_cast<int64_t>(v[kLogMoeDropped]);
    ++steps;
  }
};

// The steps whose values are still on the device: read together (one sync) when a log line, a
// validation, a checkpoint or the end of the run needs them, never in a step.
struct PendingSteps {
  std::vector<int64_t> steps;
  std::vector<torch::Tensor> rows;  // StepResult::log_row()

  void add(int64_t step, const StepResult& r) {
    steps.push_back(step);
    rows.push_back(r.log_row());
  }
  bool empty() const { return steps.empty(); }
};

// What the loop carries besides the train state, saved in trainer_state.json.
struct Progress {
  int64_t bad_in_row = 0, evals_without_gain = 0, tokens = 0;
  double best_valid = std::numeric_limits<double>::quiet_NaN();
};

// The metrics scored on generated validation samples, and the one early stopping watches ("loss"
// for the validation loss).
struct ValidationMetrics {
  std::vector<std::string> sample_metrics = {"bleu", "diffuseq-bleu", "rougeL", "f1"};
  std::string stop_metric = "loss";
};

ValidationMetrics validation_metrics(const LoopOptions& o, bool has_valid) {
  ValidationMetrics v;
  const std::string& early = o.early_stop_metric;
  // One measure decides both best/ and early stopping, so that the run stops where best/ stopped improving.
  MDS_CHECK(early.empty() || o.best_metric == "loss" || o.best_metric == early, "train.best_metric = \"",
            o.best_metric, "\" and train.early_stop_metric = \"", early,
            "\" disagree: early stopping watches the measure that picks best/; give one of them");
  const std::string& watched = early.empty() ? o.best_metric : early;
  const std::string key = early.empty() ? "train.best_metric" : "train.early_stop_metric";
  if (watched != "loss") {
    const auto parsed = metrics::parse_metric_list(watched);  // an unknown name is an error here
    MDS_CHECK(parsed.size() == 1, key, " = \"", watched, "\" names ", parsed.size(), " metrics; give one");
    MDS_CHECK(o.eval_samples > 0, key, " = \"", watched,
              "\" needs generated validation samples: set train.eval_samples > 0");
    MDS_CHECK(parsed.front() != "len" && parsed.front() != "empty", key, " = \"", parsed.front(),
              "\" is not a quality measure");
    if (std::find(v.sample_metrics.begin(), v.sample_metrics.end(), parsed.front()) == v.sample_metrics.end())
      v.sample_metrics.push_back(parsed.front());
    v.stop_metric = parsed.front();
  }
  MDS_CHECK(early.empty() || has_valid, "train.early_stop_metric needs data.valid");
  MDS_CHECK(o.best_metric == "loss" || has_valid, "train.best_metric = \"", o.best_metric, "\" needs data.valid");
  return v;
}

// The seed of micro-batch `global` of step `step` (dist.seed_per_batch): splitmix64 over the three,
// so that nearby steps and places get unrelated streams.
uint64_t batch_seed(uint64_t seed, uint64_t step, uint64_t global) {
  uint64_t x = seed;
  for (const uint64_t v : {step, global}) {
    x += 0x9e3779b97f4a7c15ULL + v;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
  }
  return x;
}

// Sets the log level for a scope (the data-parallel ranks other than 0 log warnings only).
struct LogLevelScope {
  explicit LogLevelScope(LogLevel level) : saved(log_level()) { set_log_level(level); }
  ~LogLevelScope() { set_log_level(saved); }
  LogLevel saved;
};

}  // namespace

TrainResult train(const Config& c, const TrainOptions& options) {
  const auto t_start = Clock::now();
  const std::string run_dir = c.get_string("train.out_dir");
  fs::create_directories(run_dir);
  // Data-parallel (RANK / WORLD_SIZE set): rank 0 logs, validates and writes; every rank trains, on
  // GPU LOCAL_RANK of its machine when there are GPUs.
  const runtime::DistributedEnv denv = runtime::distributed_env_from_environment();
  // One training a run directory (rank 0 of a data-parallel run holds it for all).
  // Holding it, rank 0 also removes what an interrupted save left.
  fs::ExclusiveLock lock;
  if (denv.rank == 0) {
    lock = fs::ExclusiveLock(fs::join(run_dir, ".lock"), str_cat("the run directory ", run_dir, " (train.out_dir)"));
    for (const std::string& path : io::remove_checkpoint_leftovers(run_dir))
      log_info("removed ", path, ", left by a run that stopped while saving");
  }
  const std::string resume_from = options.resume ? latest_checkpoint(run_dir) : std::string();
  if (!options.resume && !latest_checkpoint(run_dir).empty())
    fail(run_dir, " already holds checkpoints: pass --resume to continue that run, or set train.out_dir to a new "
         "directory");
  if (options.resume && resume_from.empty()) log_info("no checkpoint in ", run_dir, ": starting a new run");

  Runtime runtime = resolve_runtime(c);
  if (denv.active() && runtime.device.is_cuda()) {
    const int gpus = runtime::cuda_device_count();
    // One GPU visible (CUDA_VISIBLE_DEVICES set per process): that one; else GPU LOCAL_RANK.
    MDS_CHECK(gpus == 1 || denv.local_rank < gpus, "LOCAL_RANK=", denv.local_rank, " but this machine shows ", gpus,
              " GPUs: one process per GPU (or CUDA_VISIBLE_DEVICES set per process)");
    runtime.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(gpus == 1 ? 0 : denv.local_rank));
    runtime::make_current(runtime.device);
  }
  const bool lead = denv.rank == 0;
  LogLevelScope quiet(lead ? log_level() : LogLevel::warn);
  runtime::Collective dist(denv, std::chrono::milliseconds(static_cast<int64_t>(1000.0 * c.get_float("dist.timeout_s"))),
                           c.get_string("dist.backend"), runtime.device);
  if (dist.active()) log_info("data-parallel: ", denv.world_size, " process(es) (c10d ", dist.backend(), "), this is rank 0");
  log_info("training on ", runtime.describe(), " (train.precision = \"", c.get_string("train.precision"),
           "\"; weights, optimizer state and losses in fp32)");
  seed_everything(static_cast<uint64_t>(c.get_int("train.seed")));
  auto gen = at::detail::getDefaultCPUGenerator();

  // ------------------------------------------------------------------ data and model
  MDS_CHECK(!c.get_string("data.tokenizer").empty(), "data.tokenizer is not set: train one with `moe-diffuseq "
            "tokenizer train` and give its directory");
  MDS_CHECK(!c.get_string("data.train").empty(), "data.train is not set");
  Tokenizer tokenizer = Tokenizer::load(c.get_string("data.tokenizer"));
  std::unique_ptr<ExampleSource> train_data = open_examples(c.get_string("data.train"), tokenizer);
  if (c.get_bool("data.swap_pairs")) train_data = std::make_unique<data::SwappedPairs>(std::move(train_data));
  std::unique_ptr<ExampleSource> valid_data;
  if (!c.get_string("data.valid").empty()) valid_data = open_examples(c.get_string("data.valid"), tokenizer);

  // Expert parallelism: rank r holds shard r of every MoE layer's experts.
  const bool expert_parallel = c.get_bool("dist.expert_parallel") && denv.world_size > 1;
  if (expert_parallel) {
    const int64_t experts = c.get_int("moe.experts");
    MDS_CHECK(experts > 1 && experts % denv.world_size == 0, "dist.expert_parallel: moe.experts = ", experts,
              " cannot be shared evenly by ", denv.world_size, " processes");
    MDS_CHECK(c.get_float("moe.capacity_factor") == 0.0, "dist.expert_parallel: the sharded experts take every "
              "token (dropless); set moe.capacity_factor = 0 (it is ", c.get_float("moe.capacity_factor"), ")");
  }
  TrainState state = make_train_state(c, tokenizer.vocab_size(), runtime, expert_parallel ? denv.world_size : 1,
                                      expert_parallel ? denv.rank : 0);
  log_info(state.model->describe());
  CollectiveExpertExchange exchange(dist);
  const ExpertShards experts = expert_shards_of(*state.model, &dist);
  if (experts.active()) {
    state.model->set_expert_exchange(&exchange);
    log_info("expert parallelism: ", c.get_int("moe.experts") / denv.world_size,
             " experts of every MoE layer on each of the ", denv.world_size, " processes");
  }
  const LoopOptions loop = loop_options_from_config(c);
  const ValidationMetrics vm = validation_metrics(loop, valid_data != nullptr);
  data::BatchPlanOptions plan = batch_plan_options_from_config(c, /*shuffle=*/true);
  plan.rank = denv.rank;  // rank r takes batches r, r + N, ... of the one global order
  plan.world_size = denv.world_size;
  const data::PackOptions pack = pack_options_from_config(c);
  // Say what the length limits cut: a short data.max_src_len on long sources is a choice to see.
  log_info("data: ", data::describe_length_cuts(data::length_cuts(*train_data, pack), pack));
  // data.target_canvas: the targets laid out on their sources, once. Validation by generation still
  // scores against the targets as written.
  const double rewrite = c.get_float("data.canvas_rewrite_below");
  const bool compact = c.get_bool("data.canvas_rewrite_compact");
  MDS_CHECK(!compact || (pack.source_canvas && rewrite > 0),
            "data.canvas_rewrite_compact needs data.target_canvas = \"source\" and data.canvas_rewrite_below > 0");
  const auto canvas_start = std::chrono::steady_clock::now();
  const std::unique_ptr<data::CanvasTargets> train_canvas = data::on_canvas(*train_data, pack, rewrite, compact);
  const std::unique_ptr<data::CanvasTargets> valid_canvas =
      valid_data ? data::on_canvas(*valid_data, pack, rewrite, compact) : nullptr;
  if (train_canvas) {
    log_info("data: targets laid out on their sources' canvas (", pack.canvas_slots, " empty place(s) after every source token) in ",
             format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - canvas_start).count()), "; ",
             train_canvas->cut(), " of ", train_canvas->size(), " longer than their canvas, cut; ", train_canvas->rewritten(),
             " written from the first place (data.canvas_rewrite_below = ", rewrite, ")",
             compact ? ", trained from their sources packed there, and the rewrite head learns which they are "
                       "(data.canvas_rewrite_compact)"
                     : "");
  }
  const ExampleSource& train_examples = train_canvas ? *train_canvas : *train_data;
  Batcher batcher(train_examples, pack, plan);
  StepOptions step_options = step_options_from_config(c);
  std::unique_ptr<GradientReducer> reducer;
  if (dist.active()) {
    reducer = std::make_unique<GradientReducer>(dist, experts.replicated,
                                                static_cast<int64_t>(c.get_float("dist.bucket_mb") * (1 << 20)));
    step_options.reducer = reducer.get();
    step_options.experts = &experts;
    log_info("data-parallel: gradients in ", reducer->buckets(), " bucket(s) of at most ", c.get_float("dist.bucket_mb"), " MiB");
  }
  // Each micro-batch's randomness from (seed, step, its place in the global batch): N ranks draw what
  // one process with train.grad_accum = N draws, whatever the number of processes.
  if (dist.active() || c.get_bool("dist.seed_per_batch")) {
    step_options.before_micro = [&, seed = static_cast<uint64_t>(c.get_int("train.seed"))](int64_t micro) {
      const uint64_t global = static_cast<uint64_t>(micro * denv.world_size + denv.rank);
      const uint64_t s = batch_seed(seed, static_cast<uint64_t>(state.step), global);
      gen.set_current_seed(s);
      if (runtime.device.is_cuda()) {
        at::Generator device_gen = at::globalContext().defaultGenerator(runtime.device);
        device_gen.set_current_seed(s);
      }
    };
  }

  // ------------------------------------------------------------------ resume
  Progress progress;
  if (!resume_from.empty()) {
    CheckpointContent ck = read_checkpoint(resume_from);
    // Expert parallelism: this rank's slice of the experts (checkpoints hold all of them).
    slice_expert_shards(ck.raw, experts, resume_from + "/raw.safetensors");
    slice_expert_shards(ck.model, experts, resume_from + "/model.safetensors");
    slice_expert_shards(ck.optimizer, experts, resume_from + "/optimizer.safetensors");
    load_state_dict(*state.model, ck.raw.empty() ? ck.model : ck.raw, resume_from + "/raw.safetensors");
    state.optimizer->load_state(ck.optimizer, resume_from + "/optimizer.safetensors");
    if (state.ema) state.ema->load(ck.model, resume_from + "/model.safetensors");
    state.t_sampler->load(ck.sampler.at("t_sampler.history"), ck.sampler.at("t_sampler.counts"));
    gen.set_state(ck.sampler.at("rng.cpu"));
    // The GPU's noise and dropout stream (absent from CPU runs and from checkpoints of older versions).
    if (runtime.device.is_cuda() && ck.sampler.count("rng.device") != 0)
    {
      at::Generator device_gen = at::globalContext().defaultGenerator(runtime.device);
      device_gen.set_state(ck.sampler.at("rng.device"));
    }
    const auto& st = ck.trainer_state;
    const std::string state_path = resume_from + "/trainer_state.json";
    state.step = json_integer<int64_t>(st, "step", state_path);
    // The data position in global batches (a run saved by N processes resumes on M): each rank's
    // position is the global one over the new world size.
    const auto saved_world = json_integer_or<int64_t>(st, "world_size", 1, state_path);
    const auto global_position = st.contains("global_position")
                                     ? json_integer<int64_t>(st, "global_position", state_path)
                                     : json_integer<int64_t>(st, "position", state_path) * saved_world;
    MDS_CHECK(saved_world >= 1 && global_position >= 0, state_path, ": world size ", saved_world,
              " (at least 1) or data position ", global_position, " (not negative) is out of range");
    MDS_CHECK(global_position % denv.world_size == 0, resume_from, ": saved by ", saved_world,
              " process(es) after ", global_position, " batches of its epoch, which ", denv.world_size,
              " processes cannot split evenly; resume with a world size that divides it");
    batcher.seek(json_integer<uint64_t>(st, "epoch", state_path),
                 static_cast<std::size_t>(global_position / denv.world_size));
    progress.bad_in_row = json_integer_or<int64_t>(st, "bad_steps_in_row", 0, state_path);
    progress.evals_without_gain = json_integer_or<int64_t>(st, "evals_without_gain", 0, state_path);
    progress.tokens = json_integer_or<int64_t>(st, "tokens", 0, state_path);
    state.train_seconds = st.value("train_seconds", 0.0);
    if (st.contains("best_valid") && !st.at("best_valid").is_null())
      progress.best_valid = st.at("best_valid").get<double>();
    log_info("resumed from ", resume_from, " at step ", state.step);
  } else if (lead) {
    fs::write_file_atomic(fs::join(run_dir, "config.toml"), c.to_toml(true));
  }
  // Every rank starts from rank 0's weights (the same seed makes them equal already: a check that costs
  // one broadcast). Expert shards differ by design.
  dist.broadcast(experts.replicated);

  // Checkpoints are copied here and written by a background thread (one at a time).
  io::CheckpointWriter writer;
  const auto prune = [run_dir, keep = loop.keep_last] { prune_checkpoints(run_dir, keep); };
  // A decision every rank must share where, with expert parallelism, every rank acts on it: rank 0's
  // (without expert parallelism only rank 0 acts, and needs no agreement).
  auto rank0_decides = [&](bool mine) { return experts.active() ? dist.any(lead && mine) : mine; };
  // Data-parallel: every rank calls it, rank 0 writes (the ranks hold the same weights, or, with
  // expert parallelism, their shards are gathered first).
  auto save = [&](const std::string& dir, std::function<void()> after = {}) {
    if (!lead && !experts.active()) return;
    CheckpointContent ck;
    ck.raw = state_dict(*state.model);
    gather_expert_shards(ck.raw, experts);
    if (state.ema) {
      ck.model = state.ema->weights();
      gather_expert_shards(ck.model, experts);
    } else {
      ck.model = ck.raw;
    }
    ck.optimizer = state.optimizer->state();
    gather_expert_shards(ck.optimizer, experts);
    if (!lead) return;
    state.t_sampler->flush();  // the last step's losses, as the next draw would see them
    ck.sampler["t_sampler.history"] = state.t_sampler->history_tensor();
    ck.sampler["t_sampler.counts"] = state.t_sampler->counts_tensor();
    ck.sampler["rng.cpu"] = gen.get_state();
    if (runtime.device.is_cuda()) ck.sampler["rng.device"] = at::globalContext().defaultGenerator(runtime.device).get_state();
    const double best = progress.best_valid;
    ck.trainer_state = {{"step", state.step},
                        {"epoch", batcher.epoch()},
                        {"position", batcher.position()},
                        {"world_size", denv.world_size},
                        {"global_position", static_cast<int64_t>(batcher.position()) * denv.world_size},
                        {"bad_steps_in_row", progress.bad_in_row},
                        {"evals_without_gain", progress.evals_without_gain},
                        {"tokens", progress.tokens},
                        {"train_seconds", state.train_seconds},
                        {"device", runtime.device.str()},  // informational: how this state was made
                        {"precision", to_string(runtime.precision)},
                        {"best_valid", std::isnan(best) ? nlohmann::json(nullptr) : nlohmann::json(best)}};
    ck.tokenizer_model = tokenizer.serialized();
    ck.config_toml = c.to_toml(true);
    writer.write(dir, ck, std::move(after));
  };
  auto step_dir = [&] { return fs::join(run_dir, "checkpoints/step_" + std::to_string(state.step)); };

  // ------------------------------------------------------------------ loop
  MetricsLog metrics_log(lead ? fs::join(run_dir, "metrics.jsonl") : std::string(), state.step);
  const bool terminal = stderr_is_terminal();
  const int64_t total_steps = loop.total_steps;
  TrainResult result;
  LogWindow window;
  const auto loop_start = Clock::now();
  const double seconds_before = state.train_seconds;  // from earlier runs of a resumed one
  auto clock_loop = [&] { state.train_seconds = seconds_before + seconds_since(loop_start); };
  const bool on_budget = loop.max_seconds > 0;
  int64_t tokens_this_run = 0;
  const int64_t first_step = state.step;
  result.stop_reason = "finished";
  runtime::StopSignals stop_signals;  // Ctrl-C: a checkpoint, then a clean return
  PendingSteps pending;
  // Reads the pending steps' values: losses, the log window, skipped steps and the stop after
  // train.max_bad_steps in a row (found here, up to a log interval after the step, with its number).
  auto flush = [&] {
    if (pending.empty()) return;
    torch::Tensor values = torch::stack(pending.rows).to(torch::kCPU).contiguous();
    if (dist.active()) {  // the mean over the ranks (a step skipped anywhere is skipped everywhere)
      dist.all_reduce_sum(values);
      values.div_(static_cast<double>(denv.world_size));
    }
    const float* v = values.data_ptr<float>();
    for (std::size_t i = 0; i < pending.steps.size(); ++i, v += kNumLogFields) {
      const int64_t step = pending.steps[i];
      if (v[kLogSkipped] != 0.0f) {
        ++progress.bad_in_row;
        ++window.skipped;
        result.losses.push_back(std::numeric_limits<double>::quiet_NaN());
        log_warn("step ", step, ": the loss or the gradient is NaN or inf; step skipped (", progress.bad_in_row,
                 " in a row)");
        if (progress.bad_in_row >= loop.max_bad_steps) {
          const std::string last_ck = latest_checkpoint(run_dir);
          fail("stopping: ", progress.bad_in_row, " steps in a row had a NaN or inf loss (train.max_bad_steps = ",
               loop.max_bad_steps, "); ",
               last_ck.empty() ? std::string("no checkpoint was written") : "the last good checkpoint is " + last_ck,
               ". Lower train.lr or raise train.warmup_steps.");
        }
        continue;
      }
      progress.bad_in_row = 0;
      result.losses.push_back(v[kLogLoss]);
      window.add(v);
    }
    pending = PendingSteps();
  };
  // Scores the validation set at this step and saves best/ when it improved.
  int64_t validated_step = -1;
  auto validate = [&] {
    const int64_t step = state.step;
    validated_step = step;
    const double loss_v = validation_loss(state, valid_canvas ? *valid_canvas : *valid_data, c);
    crash_point("train.validation");
    nlohmann::json record = {{"step", step}, {"valid_loss", loss_v}};
    double v = loss_v;
    if (loop.eval_samples > 0) {
      auto scores = validate_by_generation(state, *valid_data, c, tokenizer, lead ? run_dir : std::string(),
                                           vm.sample_metrics);
      for (const auto& [name, value] : scores) record["valid_" + name] = value;
      std::string listed;
      for (const auto& name : vm.sample_metrics) listed += str_cat(listed.empty() ? "" : ", ", name, " ", scores.at(name));
      log_info("step ", step, ": generated validation samples: ", listed, " (",
               fs::join(run_dir, "samples/step_" + std::to_string(step) + ".jsonl"), ")");
      // Early stopping compares "higher is better" metrics through their negation.
      if (vm.stop_metric != "loss") v = -scores.at(vm.stop_metric);
    }
    const bool improved = rank0_decides(std::isnan(progress.best_valid) || v < progress.best_valid);
    if (improved) {
      progress.best_valid = v;
      progress.evals_without_gain = 0;
    } else {
      ++progress.evals_without_gain;
    }
    const bool by_loss = vm.stop_metric == "loss";
    record[by_loss ? std::string("best_valid_loss") : "best_valid_" + vm.stop_metric] =
        by_loss ? progress.best_valid : -progress.best_valid;
    metrics_log.write(record);
    if (terminal) std::fprintf(stderr, "\n");
    log_info("step ", step, ": validation loss ", loss_v, improved ? " (best so far by " + vm.stop_metric + ")" : "");
    if (improved) save(fs::join(run_dir, "best"));
  };
  std::string stop;  // why this rank would stop (data-parallel: its ranks agree a few steps later)
  while (state.step < total_steps) {
    if (options.stop_after >= 0 && state.step - first_step >= options.stop_after) {
      result.stop_reason = str_cat("stopped after ", options.stop_after, " steps");
      break;
    }
    if (stop.empty()) {
      if (on_budget && state.train_seconds >= loop.max_seconds)
        stop = str_cat("time budget of ", loop.max_seconds / 60.0, " min reached");
      else if (stop_signals.requested() != 0)
        stop = str_cat("interrupted by ", runtime::StopSignals::name(stop_signals.requested()));
    }
    // Data-parallel: the ranks stop together, when any of them would (one tiny all-reduce a step),
    // kStopLag steps after the first of them would: no step waits for the GPU to finish the last.
    if (dist.any_after(!stop.empty(), kStopLag)) {
      result.stop_reason = stop.empty() ? std::string("stopped with the other ranks") : stop;
      break;
    }
    clock_loop();
    const StepResult r = train_step(state, [&] { return batcher.next(); }, step_options, gen);
    crash_point("train.step");
    clock_loop();
    if (options.on_step) options.on_step(state.step);
    const int64_t step = state.step;
    progress.tokens += r.tokens;
    tokens_this_run += r.tokens;
    window.tokens += r.tokens;
    window.real_tokens += r.real_tokens;
    pending.add(step, r);
    const bool log_now = step % loop.log_every == 0 || step == total_steps;
    const bool eval_now = valid_data && loop.eval_every > 0 && (step % loop.eval_every == 0 || step == total_steps);
    const bool save_now = loop.save_every > 0 && step % loop.save_every == 0;
    // At most a log interval (and 256 steps) of values waits on the device.
    if (log_now || eval_now || save_now || pending.steps.size() >= 256) flush();

    if (log_now) {
      const double n = static_cast<double>(std::max<int64_t>(1, window.steps));
      const double window_s = std::max(1e-9, seconds_since(window.start));
      const double tok_s = static_cast<double>(window.tokens) / window_s;
      const double real_tok_s = static_cast<double>(window.real_tokens) / window_s;
      const double run_s = seconds_since(loop_start);
      double left = run_s / static_cast<double>(step - first_step) * static_cast<double>(total_steps - step);
      if (on_budget) left = std::min(left, std::max(0.0, loop.max_seconds - state.train_seconds));
      metrics_log.write({{"step", step}, {"loss", window.loss / n}, {"mse", window.mse / n},
                         {"rounding", window.rounding / n}, {"prior", window.prior / n},
                         {"x0_ce", window.x0_ce / n}, {"length", window.length / n}, {"rewrite", window.rewrite / n},
                         {"absorb", window.absorb / n}, {"moe_aux", window.aux / n}, {"moe_z", window.z / n},
                         {"grad_norm", window.grad_norm / n}, {"lr", r.lr}, {"tokens_per_s", tok_s},
                         {"real_tokens_per_s", real_tok_s}, {"moe_dropped", window.dropped},
                         {"skipped_steps", window.skipped}, {"epoch", batcher.epoch()},
                         {"elapsed_s", seconds_since(t_start)}, {"train_s", state.train_seconds}});
      const std::string line = str_cat("step ", step, on_budget ? std::string() : str_cat("/", total_steps), "  loss ", window.loss / n, " (mse ",
                                       window.mse / n, ", rounding ", window.rounding / n, ")  lr ", r.lr, "  ",
                                       static_cast<int64_t>(tok_s), " tok/s (",
                                       static_cast<int64_t>(real_tok_s), " not padding)  ", format_duration(run_s),
                                       " elapsed, ", format_duration(left), " left");
      if (terminal) std::fprintf(stderr, "\r\033[K%s", line.c_str());
      else log_info(line);
      window = LogWindow();
    }

    if (eval_now) {
      // Data-parallel: rank 0 validates (the ranks hold the same weights); with expert parallelism every
      // rank runs the same validation, as its experts serve the others' tokens.
      if (lead || experts.active()) validate();
      if (dist.any(lead && !loop.early_stop_metric.empty() && progress.evals_without_gain >= loop.early_stop_patience)) {
        result.stop_reason = "early stopping";
        save(step_dir());
        break;
      }
    }
    if (save_now) save(step_dir(), prune);
  }
  flush();
  // A run that ends on its time budget is validated at its last step too, so that best/ weighs the
  // final weights (trained with the learning rate decayed to its end) against the earlier ones.
  const bool budget_spent = result.stop_reason.rfind("time budget", 0) == 0;
  // (The ranks may disagree on why they stopped: rank 0 decides.)
  const bool validate_last =
      lead && budget_spent && valid_data && loop.eval_every > 0 && validated_step != state.step && state.step > first_step;
  if (rank0_decides(validate_last)) validate();
  if (terminal) std::fprintf(stderr, "\n");
  // The final state is always saved, so that --resume and generate find it; on return it is on disk.
  writer.wait();
  const bool unsaved = lead && !fs::exists(fs::join(step_dir(), "trainer_state.json"));
  if (rank0_decides(unsaved)) save(step_dir(), prune);
  writer.wait();
  clock_loop();
  result.step = state.step;
  result.train_seconds = state.train_seconds;
  result.best_valid = progress.best_valid;
  result.tokens_per_second = static_cast<double>(tokens_this_run) / std::max(1e-9, seconds_since(loop_start));
  log_info("training ", result.stop_reason, " at step ", state.step, " after ", format_duration(state.train_seconds),
           ": ",
           static_cast<int64_t>(result.tokens_per_second), " tokens/s; checkpoints in ",
           fs::join(run_dir, "checkpoints"),
           stop_signals.requested() != 0 ? " (continue with --resume)" : "");
  return result;
}

}  // namespace mds::train
