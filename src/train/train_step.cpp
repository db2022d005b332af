#include "train/train_step.h"

#include <cmath>

#include <torch/cuda.h>

#include "core/host_to_device.h"
#include "model/batch_tensors.h"
#include "model/model_options.h"

namespace mds::train {

using data::Batch;
using diffusion::LossTerms;
using diffusion::NoiseSchedule;
using diffusion::TimestepSampler;
using diffusion::diffusion_loss;
using diffusion::loss_options_from_config;
using model::BatchTensors;
using model::Denoiser;
using model::model_options_from_config;
using model::to_tensors;
using runtime::PrecisionScope;
using runtime::Runtime;

TrainState make_train_state(const Config& c, int64_t vocab_size, const Runtime& runtime, int64_t expert_shards,
                            int64_t expert_shard) {
  TrainState s;
  s.runtime = runtime;
  model::ModelOptions options = model_options_from_config(c, vocab_size);
  options.expert_shards = expert_shards;
  options.expert_shard = expert_shard;
  s.model = Denoiser(options);
  s.model->to(runtime.device);
  s.model->train();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : s.model->named_parameters()) {
    named.emplace_back(p.key(), p.value());
    s.params.push_back(p.value());
  }
  s.optimizer = std::make_unique<AdamW>(named, adamw_options_from_config(c));
  const double ema_decay = c.get_float("train.ema_decay");
  if (ema_decay > 0) s.ema = std::make_unique<Ema>(*s.model, ema_decay, c.get_bool("train.ema_warmup"));
  s.schedule = NoiseSchedule::from_config(c);
  s.t_sampler = std::make_unique<TimestepSampler>(c.get_string("diffusion.t_sampler"), s.schedule.steps);
  s.loss = loss_options_from_config(c);
  return s;
}

StepOptions step_options_from_config(const Config& c) {
  StepOptions o;
  o.grad_accum = c.get_int("train.grad_accum");
  o.grad_clip = c.get_float("train.grad_clip");
  o.lr = lr_schedule_from_config(c);
  return o;
}

void PhaseClock::start() {
  if (sync && device.is_cuda()) torch::cuda::synchronize();
  last_ = std::chrono::steady_clock::now();
}

void PhaseClock::mark(const std::string& phase) {
  if (sync && device.is_cuda()) torch::cuda::synchronize();
  const auto now = std::chrono::steady_clock::now();
  const double dt = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  for (auto& [name, total] : seconds)
    if (name == phase) {
      total += dt;
      return;
    }
  seconds.emplace_back(phase, dt);
}

torch::Tensor StepResult::log_row() const {
  const auto f = [&](const torch::Tensor& t) {
    return t.defined() ? t.detach().to(loss.device(), torch::kFloat).reshape({}) : torch::zeros({}, loss.options());
  };
  std::vector<torch::Tensor> row(kNumLogFields);
  row[kLogLoss] = f(loss), row[kLogMse] = f(last.mse), row[kLogRounding] = f(last.rounding);
  row[kLogPrior] = f(last.prior), row[kLogX0Ce] = f(last.x0_ce), row[kLogLength] = f(last.length);
  row[kLogRewrite] = f(last.rewrite);
  row[kLogAbsorb] = f(last.absorb), row[kLogMoeAux] = f(last.moe_aux), row[kLogMoeZ] = f(last.moe_z);
  row[kLogGradNorm] = f(grad_norm), row[kLogSkipped] = f(skipped), row[kLogMoeDropped] = f(last.dropped);
  return torch::stack(row);
}

StepResult train_step(TrainState& s, const std::function<Batch()>& next_batch, const StepOptions& o,
                      at::Generator gen) {
  StepResult r;
  const auto mark = [&](const char* phase) {
    if (o.clock) o.clock->mark(phase);
  };
  s.optimizer->zero_grad();
  const double A = static_cast<double>(o.grad_accum);
  for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
    if (o.before_micro) o.before_micro(micro);
    Batch batch = next_batch();
    mark("data");
    r.tokens += batch.tokens();
    r.real_tokens += batch.real_tokens();
    BatchTensors bt = to_tensors(batch, s.runtime.device);
    auto draw = s.t_sampler->sample(batch.batch_size, gen);
    // A share of the examples learns to edit the source: noised from it, at an early time (uniform, weight 1).
    torch::Tensor from_source_B;
    if (s.loss.source_start_prob > 0) {
      from_source_B = torch::rand({batch.batch_size}, gen) < s.loss.source_start_prob;
      const double top = std::max(1.0, s.loss.source_start_time * static_cast<double>(s.schedule.steps));
      const torch::Tensor early_B = (torch::rand({batch.batch_size}, gen) * top).to(torch::kLong);
      draw.t_B = torch::where(from_source_B, early_B, draw.t_B);
      draw.weight_B = torch::where(from_source_B, torch::ones_like(draw.weight_B), draw.weight_B);
    }
    mark("to device");
    LossTerms terms;
    {
      // Forward and loss under autocast (bf16); backward and the optimizer step outside it: the
      // parameters stay fp32 master weights and receive fp32 gradients.
      PrecisionScope scope(s.runtime.precision, s.runtime.device);
      terms = diffusion_loss(s.model, bt, s.schedule, draw.t_B, draw.weight_B, s.loss, gen, from_source_B);
    }
    mark("forward");
    const torch::Tensor total = terms.total.detach().to(torch::kFloat);
    const torch::Tensor bad = total.isfinite().logical_not();
    r.skipped = r.skipped.defined() ? r.skipped.logical_or(bad) : bad;
    if (o.reducer && micro == o.grad_accum - 1) o.reducer->arm();
    (terms.total / A).backward();
    mark("backward");
    // The loss-aware sampler learns from the losses on the host, which get them without a wait (the
    // next draw applies them); a NaN or inf batch teaches it nothing. The uniform one needs no history.
    // Rows noised from the source are not the forward process it samples for: left out.
    if (s.t_sampler->kind() == "lossaware") {
      torch::Tensor t_B = draw.t_B, loss_B = terms.loss_B.detach();
      if (from_source_B.defined()) {
        const torch::Tensor rows = from_source_B.logical_not().nonzero().squeeze(1);  // CPU
        t_B = t_B.index_select(0, rows);
        loss_B = loss_B.index_select(0, to_device_async(rows, loss_B.device()));
      }
      s.t_sampler->update_later(t_B, loss_B, bad);
    }
    r.loss = r.loss.defined() ? r.loss + total / A : total / A;
    r.last = terms;
  }
  ++s.step;
  if (o.reducer) {
    o.reducer->finish();
    mark("all-reduce");
  }
  if (o.experts != nullptr && o.experts->active()) {
    average_expert_gradients(*o.experts);
    runtime::Collective& group = *o.experts->group;
    r.grad_norm = gradient_norm(o.experts->replicated, o.experts->params,
                                [&group](torch::Tensor& t) { group.all_reduce_sum(t); });
  } else {
    r.grad_norm = gradient_norm(s.params);
  }
  if (r.grad_norm.defined()) r.skipped = r.skipped.logical_or(r.grad_norm.isfinite().logical_not());
  // The clip is a divisor that AdamW applies as it reads the gradients (no pass of its own).
  const torch::Tensor divisor = clip_divisor(r.grad_norm, o.grad_clip);
  mark("clip");
  r.lr = o.lr.at(s.step - 1, s.train_seconds);
  s.optimizer->step(r.lr, r.skipped, divisor);
  mark("optimizer");
  if (s.ema) s.ema->update(*s.model, s.step - 1);
  mark("ema");
  return r;
}

}  // namespace mds::train
