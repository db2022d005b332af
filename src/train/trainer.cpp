// The training loop (docs/architecture.md, "Training"). Every random draw (t, noise, dropout, jitter)
// comes from LibTorch's default CPU generator, whose state is saved in each checkpoint together with
// the data position, so a resumed run repeats exactly what an uninterrupted one would do.
#include "train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/batcher.h"
#include "data/jsonl.h"
#include "data/open_examples.h"
#include "data/tokenizer.h"
#include "diffusion/loss.h"
#include "diffusion/t_sampler.h"
#include "infer/generator.h"
#include "metrics/eval_report.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "model/device.h"
#include "model/precision.h"
#include "model/state_dict.h"
#include "train/checkpoint.h"
#include "train/metrics_log.h"
#include "train/optim.h"

namespace mds {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

PackOptions pack_options(const Config& c) {
  PackOptions p;
  p.max_src_len = static_cast<int>(c.get_int("data.max_src_len"));
  p.max_trg_len = static_cast<int>(c.get_int("data.max_trg_len"));
  p.truncation = parse_truncation(c.get_string("data.truncation"));
  p.trg_pad = parse_target_padding(c.get_string("data.trg_pad"));
  p.globals = parse_global_tokens(c.get_string("attention.globals"));
  return p;
}

BatchPlanOptions plan_options(const Config& c, bool shuffle) {
  BatchPlanOptions b;
  b.batch_tokens = static_cast<std::size_t>(c.get_int("data.batch_tokens"));
  b.max_batch_size = static_cast<std::size_t>(c.get_int("data.max_batch_size"));
  b.bucket_window = static_cast<std::size_t>(c.get_int("data.bucket_window"));
  b.shuffle = shuffle && c.get_bool("data.shuffle");
  b.seed = static_cast<uint64_t>(c.get_int("train.seed"));
  return b;
}

LossOptions loss_options(const Config& c) {
  LossOptions o;
  o.target_only = c.get_string("loss.positions") == "target";
  o.rounding_weight = c.get_float("loss.rounding_weight");
  o.prior_weight = c.get_float("loss.prior_weight");
  o.absorb_reg = c.get_float("loss.absorb_reg");
  o.forward.soft_absorbing = c.get_bool("diffusion.soft_absorbing");
  o.forward.absorb_rate = c.get_float("diffusion.absorb_rate");
  return o;
}

// Running sums of the logged terms between two log lines.
struct Window {
  double loss = 0, mse = 0, rounding = 0, prior = 0, absorb = 0, aux = 0, z = 0, grad_norm = 0;
  int64_t steps = 0, tokens = 0, skipped = 0;
  torch::Tensor dropped;  // MoE drops, summed on the device; read (one sync) when the window is logged
  Clock::time_point start = Clock::now();
};

// Mean validation loss over a fixed set of batches, with its own fixed random draws: comparable across
// validations, and the training generator is left exactly as it was.
double validate(Denoiser& model, const ExampleSource& valid, const Config& c, const NoiseSchedule& schedule,
                const LossOptions& loss_opts, c10::Device device, Precision precision) {
  auto gen = at::detail::getDefaultCPUGenerator();
  const auto saved = gen.get_state();
  gen.set_current_seed(static_cast<uint64_t>(c.get_int("train.seed")) + 7919);
  torch::NoGradGuard no_grad;
  model->eval();
  auto plan = plan_batches(valid, pack_options(c), plan_options(c, /*shuffle=*/false), 0);
  const int64_t limit = c.get_int("train.eval_batches");
  if (limit > 0 && static_cast<int64_t>(plan.size()) > limit) plan.resize(static_cast<std::size_t>(limit));
  TimestepSampler uniform("uniform", schedule.steps);
  double sum = 0;
  int64_t count = 0;
  for (const auto& examples : plan) {
    Batch batch = pack_batch(valid, examples, pack_options(c));
    BatchTensors t = to_tensors(batch, device);
    auto draw = uniform.sample(batch.batch_size, gen);
    PrecisionScope scope(precision, device);  // as in training, so the two losses compare
    LossTerms terms = diffusion_loss(model, t, schedule, draw.t_B, draw.weight_B, loss_opts, gen);
    sum += terms.loss_B.sum().item<double>();
    count += batch.batch_size;
  }
  model->train();
  gen.set_state(saved);
  return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
}

// Generates the first train.eval_samples validation examples with the EMA weights and scores them
// (the generations go to RUN/samples/step_N.jsonl). Returns {metric: value}.
std::map<std::string, double> validate_by_generation(Denoiser& model, const Ema* ema, const ExampleSource& valid,
                                                     const Config& c, const Tokenizer& tokenizer, c10::Device device,
                                                     const std::string& run_dir, int64_t step,
                                                     const std::vector<std::string>& metric_names) {
  const std::size_t n = std::min<std::size_t>(valid.size(), static_cast<std::size_t>(c.get_int("train.eval_samples")));
  std::vector<std::string> sources, references;
  for (std::size_t i = 0; i < n; ++i) {
    auto src = valid.src(i), trg = valid.trg(i);
    sources.push_back(tokenizer.decode(std::vector<int32_t>(src.begin(), src.end())));
    references.push_back(tokenizer.decode(std::vector<int32_t>(trg.begin(), trg.end())));
  }
  // Sample with the EMA weights, as generate would, then put the training weights back.
  std::map<std::string, torch::Tensor> backup;
  if (ema) {
    for (const auto& [name, t] : state_dict(*model)) backup[name] = t.clone();
    load_state_dict(*model, ema->weights(), "EMA weights");
  }
  model->eval();
  TextGenerator generator(c, tokenizer, model, device);
  const std::vector<std::string> predictions = generator.generate(sources, generate_options_from_config(c));
  model->train();
  if (ema) load_state_dict(*model, backup, "training weights");

  metrics::EvalSet set;
  set.prediction_files = {"validation samples"};
  set.matched_by = "line";
  set.sources = sources;
  for (const auto& r : references) set.references.push_back({r});
  set.predictions = {predictions};
  for (std::size_t i = 0; i < n; ++i) {
    set.ids.push_back(std::to_string(i));
    set.lines.push_back(i + 1);
  }
  metrics::EvalOptions eo;
  eo.metrics = metric_names;
  metrics::EvalReport report = metrics::evaluate(set, eo);
  std::map<std::string, double> out;
  for (const auto& m : report.systems.front().metrics) out[m.name] = m.value;

  std::string text;
  for (std::size_t i = 0; i < n; ++i)
    text += "{\"src\": " + json_quote(sources[i]) + ", \"reference\": " + json_quote(references[i]) +
            ", \"prediction\": " + json_quote(predictions[i]) + "}\n";
  fs::create_directories(fs::join(run_dir, "samples"));
  fs::write_file_atomic(fs::join(run_dir, "samples/step_" + std::to_string(step) + ".jsonl"), text);
  return out;
}

}  // namespace

TrainResult train(const Config& c, const TrainOptions& options) {
  const auto t_start = Clock::now();
  const std::string run_dir = c.get_string("train.out_dir");
  fs::create_directories(run_dir);
  const std::string resume_from = options.resume ? latest_checkpoint(run_dir) : std::string();
  if (!options.resume && !latest_checkpoint(run_dir).empty())
    fail(run_dir, " already holds checkpoints: pass --resume to continue that run, or set train.out_dir to a new "
         "directory");
  if (options.resume && resume_from.empty()) log_info("no checkpoint in ", run_dir, ": starting a new run");

  set_threads(static_cast<int>(c.get_int("train.threads")));
  const c10::Device device = resolve_device(c.get_string("train.device"));
  const Precision precision = resolve_precision(c, "train.precision", device);
  log_info("training on ", device, " in ", to_string(precision), " (train.precision = \"",
           c.get_string("train.precision"), "\"; weights, optimizer state and losses in fp32)");
  seed_everything(static_cast<uint64_t>(c.get_int("train.seed")));
  auto gen = at::detail::getDefaultCPUGenerator();

  // ------------------------------------------------------------------ data and model
  MDS_CHECK(!c.get_string("data.tokenizer").empty(), "data.tokenizer is not set: train one with `moe-diffuseq "
            "tokenizer train` and give its directory");
  MDS_CHECK(!c.get_string("data.train").empty(), "data.train is not set");
  Tokenizer tokenizer = Tokenizer::load(c.get_string("data.tokenizer"));
  auto train_data = open_examples(c.get_string("data.train"), tokenizer);
  std::unique_ptr<ExampleSource> valid_data;
  if (!c.get_string("data.valid").empty()) valid_data = open_examples(c.get_string("data.valid"), tokenizer);

  Denoiser model(model_options_from_config(c, tokenizer.vocab_size()));
  model->to(device);
  model->train();
  log_info(model->describe());

  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::vector<torch::Tensor> params;
  for (auto& p : model->named_parameters()) {
    named.emplace_back(p.key(), p.value());
    params.push_back(p.value());
  }
  AdamW optimizer(named, adamw_options(c));
  const double ema_decay = c.get_float("train.ema_decay");
  std::unique_ptr<Ema> ema;
  if (ema_decay > 0) ema = std::make_unique<Ema>(*model, ema_decay);

  const NoiseSchedule schedule = NoiseSchedule::make(c.get_string("diffusion.schedule"), c.get_int("diffusion.steps"));
  TimestepSampler t_sampler(c.get_string("diffusion.t_sampler"), schedule.steps);
  const LossOptions loss_opts = loss_options(c);
  Batcher batcher(*train_data, pack_options(c), plan_options(c, /*shuffle=*/true));

  // ------------------------------------------------------------------ resume
  int64_t step = 0, bad_in_row = 0, evals_without_gain = 0;
  double best_valid = std::numeric_limits<double>::quiet_NaN();
  int64_t tokens_total = 0;
  if (!resume_from.empty()) {
    CheckpointContent ck = read_checkpoint(resume_from);
    load_state_dict(*model, ck.raw.empty() ? ck.model : ck.raw, resume_from + "/raw.safetensors");
    optimizer.load_state(ck.optimizer, resume_from + "/optimizer.safetensors");
    if (ema) ema->load(ck.model, resume_from + "/model.safetensors");
    t_sampler.load(ck.sampler.at("t_sampler.history"), ck.sampler.at("t_sampler.counts"));
    gen.set_state(ck.sampler.at("rng.cpu"));
    const auto& st = ck.trainer_state;
    step = st.at("step").get<int64_t>();
    batcher.seek(st.at("epoch").get<uint64_t>(), st.at("position").get<std::size_t>());
    bad_in_row = st.value("bad_steps_in_row", int64_t{0});
    evals_without_gain = st.value("evals_without_gain", int64_t{0});
    tokens_total = st.value("tokens", int64_t{0});
    if (st.contains("best_valid") && !st.at("best_valid").is_null()) best_valid = st.at("best_valid").get<double>();
    log_info("resumed from ", resume_from, " at step ", step);
  } else {
    fs::write_file_atomic(fs::join(run_dir, "config.toml"), c.to_toml(true));
  }

  auto save = [&](const std::string& dir) {
    CheckpointContent ck;
    ck.raw = state_dict(*model);
    ck.model = ema ? ema->weights() : ck.raw;
    ck.optimizer = optimizer.state();
    ck.sampler["t_sampler.history"] = t_sampler.history_tensor();
    ck.sampler["t_sampler.counts"] = t_sampler.counts_tensor();
    ck.sampler["rng.cpu"] = gen.get_state();
    ck.trainer_state = {{"step", step},
                        {"epoch", batcher.epoch()},
                        {"position", batcher.position()},
                        {"bad_steps_in_row", bad_in_row},
                        {"evals_without_gain", evals_without_gain},
                        {"tokens", tokens_total},
                        {"device", device.str()},            // informational: how this state was made
                        {"precision", to_string(precision)},
                        {"best_valid", std::isnan(best_valid) ? nlohmann::json(nullptr) : nlohmann::json(best_valid)}};
    ck.tokenizer_model = tokenizer.serialized();
    ck.config_toml = c.to_toml(true);
    write_checkpoint(dir, ck);
  };

  // ------------------------------------------------------------------ loop
  MetricsLog metrics_log(fs::join(run_dir, "metrics.jsonl"));
  const int64_t total_steps = c.get_int("train.steps");
  const int64_t accum = c.get_int("train.grad_accum");
  const int64_t log_every = c.get_int("train.log_every");
  const int64_t eval_every = c.get_int("train.eval_every");
  const int64_t save_every = c.get_int("train.save_every");
  const int64_t max_bad = c.get_int("train.max_bad_steps");
  const double grad_clip = c.get_float("train.grad_clip");
  const std::string early_metric = c.get_string("train.early_stop_metric");
  // Metrics of generated validation samples (train.eval_samples > 0); "loss" is the validation loss.
  std::vector<std::string> sample_metrics = {"bleu", "diffuseq-bleu", "rougeL", "f1"};
  if (!early_metric.empty() && early_metric != "loss") {
    const auto parsed = metrics::parse_metric_list(early_metric);  // an unknown name is an error here
    MDS_CHECK(c.get_int("train.eval_samples") > 0, "train.early_stop_metric = \"", early_metric,
              "\" needs generated validation samples: set train.eval_samples > 0");
    MDS_CHECK(parsed.front() != "len", "train.early_stop_metric = \"len\" is not a quality measure");
    if (std::find(sample_metrics.begin(), sample_metrics.end(), parsed.front()) == sample_metrics.end())
      sample_metrics.push_back(parsed.front());
  }
  MDS_CHECK(early_metric.empty() || valid_data, "train.early_stop_metric needs data.valid");
  const std::string stop_metric = early_metric.empty() || early_metric == "loss"
                                      ? std::string("loss") : metrics::parse_metric_list(early_metric).front();
  const bool terminal = stderr_is_terminal();

  TrainResult result;
  Window window;
  const auto loop_start = Clock::now();
  int64_t tokens_this_run = 0;
  const int64_t first_step = step;
  result.stop_reason = "finished";
  while (step < total_steps) {
    if (options.stop_after >= 0 && step - first_step >= options.stop_after) {
      result.stop_reason = str_cat("stopped after ", options.stop_after, " steps");
      break;
    }
    // One optimizer step over `accum` batches.
    optimizer.zero_grad();
    double step_loss = 0;
    bool finite = true;
    LossTerms last;
    int64_t step_tokens = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      Batch batch = batcher.next();
      step_tokens += batch.tokens();
      BatchTensors bt = to_tensors(batch, device);
      auto draw = t_sampler.sample(batch.batch_size, gen);
      LossTerms terms;
      {
        // Forward and loss under autocast (bf16); backward and the optimizer step outside it: the
        // parameters stay fp32 master weights and receive fp32 gradients.
        PrecisionScope scope(precision, device);
        terms = diffusion_loss(model, bt, schedule, draw.t_B, draw.weight_B, loss_opts, gen);
      }
      const double value = terms.total.item<double>();
      if (!std::isfinite(value)) { finite = false; break; }
      (terms.total / static_cast<double>(accum)).backward();
      t_sampler.update(draw.t_B, terms.loss_B);
      step_loss += value / static_cast<double>(accum);
      last = terms;
    }
    ++step;
    tokens_total += step_tokens;
    tokens_this_run += step_tokens;
    if (!finite) {
      optimizer.zero_grad();
      ++bad_in_row;
      ++window.skipped;
      result.losses.push_back(std::numeric_limits<double>::quiet_NaN());
      log_warn("step ", step, ": the loss is NaN or inf; step skipped (", bad_in_row, " in a row)");
      if (bad_in_row >= max_bad) {
        const std::string last_ck = latest_checkpoint(run_dir);
        fail("stopping: ", bad_in_row, " steps in a row had a NaN or inf loss (train.max_bad_steps = ", max_bad,
             "); ", last_ck.empty() ? std::string("no checkpoint was written")
                                    : "the last good checkpoint is " + last_ck,
             ". Lower train.lr or raise train.warmup_steps.");
      }
      continue;
    }
    bad_in_row = 0;
    const double grad_norm = clip_gradients(params, grad_clip);
    const double lr = learning_rate(step - 1, total_steps, c.get_int("train.warmup_steps"), c.get_float("train.lr"),
                                    c.get_float("train.min_lr"));
    optimizer.step(lr);
    if (ema) ema->update(*model);
    result.losses.push_back(step_loss);

    window.loss += step_loss;
    window.mse += last.mse.item<double>();
    window.rounding += last.rounding.item<double>();
    window.prior += last.prior.item<double>();
    window.absorb += last.absorb.item<double>();
    window.aux += last.moe_aux.item<double>();
    window.z += last.moe_z.item<double>();
    window.grad_norm += grad_norm;
    window.dropped = window.dropped.defined() ? window.dropped + last.dropped : last.dropped;
    window.tokens += step_tokens;
    ++window.steps;

    if (step % log_every == 0 || step == total_steps) {
      const double n = static_cast<double>(std::max<int64_t>(1, window.steps));
      const double tok_s = static_cast<double>(window.tokens) / std::max(1e-9, seconds_since(window.start));
      const double run_s = seconds_since(loop_start);
      const double left = run_s / static_cast<double>(step - first_step) * static_cast<double>(total_steps - step);
      metrics_log.write({{"step", step}, {"loss", window.loss / n}, {"mse", window.mse / n},
                     {"rounding", window.rounding / n}, {"prior", window.prior / n}, {"absorb", window.absorb / n},
                     {"moe_aux", window.aux / n}, {"moe_z", window.z / n}, {"grad_norm", window.grad_norm / n},
                     {"lr", lr}, {"tokens_per_s", tok_s},
                     {"moe_dropped", window.dropped.defined() ? window.dropped.item<int64_t>() : int64_t{0}},
                     {"skipped_steps", window.skipped}, {"epoch", batcher.epoch()},
                     {"elapsed_s", seconds_since(t_start)}});
      const std::string line = str_cat("step ", step, "/", total_steps, "  loss ", window.loss / n, " (mse ",
                                       window.mse / n, ", rounding ", window.rounding / n, ")  lr ", lr, "  ",
                                       static_cast<int64_t>(tok_s), " tok/s  ", format_duration(run_s),
                                       " elapsed, ", format_duration(left), " left");
      if (terminal) std::fprintf(stderr, "\r\033[K%s", line.c_str());
      else log_info(line);
      window = Window();
    }

    bool saved_this_step = false;
    if (valid_data && eval_every > 0 && (step % eval_every == 0 || step == total_steps)) {
      const double loss_v = validate(model, *valid_data, c, schedule, loss_opts, device, precision);
      nlohmann::json record = {{"step", step}, {"valid_loss", loss_v}};
      double v = loss_v;
      if (c.get_int("train.eval_samples") > 0) {
        auto scores = validate_by_generation(model, ema.get(), *valid_data, c, tokenizer, device, run_dir, step,
                                             sample_metrics);
        for (const auto& [name, value] : scores) record["valid_" + name] = value;
        log_info("step ", step, ": generated validation samples: bleu ", scores["bleu"], ", rougeL ",
                 scores["rougeL"], " (", fs::join(run_dir, "samples/step_" + std::to_string(step) + ".jsonl"), ")");
        // Early stopping compares "higher is better" metrics through their negation.
        if (stop_metric != "loss") v = -scores.at(stop_metric);
      }
      const bool improved = std::isnan(best_valid) || v < best_valid;
      if (improved) {
        best_valid = v;
        evals_without_gain = 0;
      } else {
        ++evals_without_gain;
      }
      record["best_" + std::string(stop_metric == "loss" ? "valid_loss" : "valid_" + stop_metric)] =
          stop_metric == "loss" ? best_valid : -best_valid;
      metrics_log.write(record);
      if (terminal) std::fprintf(stderr, "\n");
      log_info("step ", step, ": validation loss ", loss_v, improved ? " (best so far by " + stop_metric + ")" : "");
      if (improved) {
        save(fs::join(run_dir, "best"));
      }
      if (!early_metric.empty() && evals_without_gain >= c.get_int("train.early_stop_patience")) {
        result.stop_reason = "early stopping";
        save(fs::join(run_dir, "checkpoints/step_" + std::to_string(step)));
        saved_this_step = true;
        break;
      }
    }
    if (!saved_this_step && save_every > 0 && step % save_every == 0) {
      save(fs::join(run_dir, "checkpoints/step_" + std::to_string(step)));
      prune_checkpoints(run_dir, c.get_int("train.keep_last"));
    }
  }
  if (terminal) std::fprintf(stderr, "\n");
  // The final state is always saved, so that --resume and generate find it.
  const std::string final_dir = fs::join(run_dir, "checkpoints/step_" + std::to_string(step));
  if (!fs::exists(fs::join(final_dir, "trainer_state.json"))) {
    save(final_dir);
    prune_checkpoints(run_dir, c.get_int("train.keep_last"));
  }
  result.step = step;
  result.best_valid = best_valid;
  result.tokens_per_second = static_cast<double>(tokens_this_run) / std::max(1e-9, seconds_since(loop_start));
  log_info("training ", result.stop_reason, " at step ", step, ": ", static_cast<int64_t>(result.tokens_per_second),
           " tokens/s; checkpoints in ", fs::join(run_dir, "checkpoints"));
  return result;
}

}  // namespace mds
