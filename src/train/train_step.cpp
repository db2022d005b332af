#include "train/train_step.h"

#include <cmath>

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

TrainState make_train_state(const Config& c, int64_t vocab_size, const Runtime& runtime) {
  TrainState s;
  s.runtime = runtime;
  s.model = Denoiser(model_options_from_config(c, vocab_size));
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

StepResult train_step(TrainState& s, const std::function<Batch()>& next_batch, const StepOptions& o,
                      at::Generator gen) {
  StepResult r;
  s.optimizer->zero_grad();
  for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
    Batch batch = next_batch();
    r.tokens += batch.tokens();
    BatchTensors bt = to_tensors(batch, s.runtime.device);
    auto draw = s.t_sampler->sample(batch.batch_size, gen);
    LossTerms terms;
    {
      // Forward and loss under autocast (bf16); backward and the optimizer step outside it: the
      // parameters stay fp32 master weights and receive fp32 gradients.
      PrecisionScope scope(s.runtime.precision, s.runtime.device);
      terms = diffusion_loss(s.model, bt, s.schedule, draw.t_B, draw.weight_B, s.loss, gen);
    }
    const double value = terms.total.item<double>();
    if (!std::isfinite(value)) {
      r.finite = false;
      break;
    }
    (terms.total / static_cast<double>(o.grad_accum)).backward();
    s.t_sampler->update(draw.t_B, terms.loss_B);
    r.loss += value / static_cast<double>(o.grad_accum);
    r.last = terms;
  }
  ++s.step;
  if (!r.finite) {
    s.optimizer->zero_grad();
    return r;
  }
  r.grad_norm = clip_gradients(s.params, o.grad_clip);
  r.lr = o.lr.at(s.step - 1, s.train_seconds);
  s.optimizer->step(r.lr);
  if (s.ema) s.ema->update(*s.model, s.step - 1);
  return r;
}

}  // namespace mds::train
