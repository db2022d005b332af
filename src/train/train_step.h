// One optimizer step, and the state it reads and changes: the one place a training step is written.
// train() runs it in its loop; bench/train_step_bench times it.
//
// A step (train.grad_accum = A micro-batches):
//   for each micro-batch: batch to the device, t ~ the t-sampler, forward process + denoiser + loss
//   under the runtime's precision (autocast for bf16), loss.item() (the finiteness check; a NaN or
//   inf skips the rest of the step), backward of loss / A, the t-sampler's update;
//   then gradient clipping (train.grad_clip), AdamW at the schedule's learning rate, the EMA update.
// Every random draw (t, noise, dropout) comes from the generator passed in, so that a run that saves
// and restores it repeats itself exactly.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/config.h"
#include "data/batcher.h"
#include "diffusion/loss.h"
#include "diffusion/schedule.h"
#include "diffusion/t_sampler.h"
#include "model/denoiser.h"
#include "runtime/runtime.h"
#include "train/optim.h"

namespace mds::train {

struct TrainState {
  model::Denoiser model{nullptr};
  std::vector<torch::Tensor> params;  // the model's parameters, as AdamW holds them
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<Ema> ema;  // null when train.ema_decay = 0
  diffusion::NoiseSchedule schedule;
  std::unique_ptr<diffusion::TimestepSampler> t_sampler;
  diffusion::LossOptions loss;
  runtime::Runtime runtime;
  int64_t step = 0;            // optimizer steps taken, skipped ones included
  double train_seconds = 0.0;  // wall-clock time of the training loop so far, across resumes
};

// A fresh model (model_options_from_config with the tokenizer's vocabulary) on runtime.device in
// training mode, with its AdamW, EMA, noise schedule, t-sampler and loss options from `config`.
TrainState make_train_state(const Config& config, int64_t vocab_size, const runtime::Runtime& runtime);

struct StepOptions {
  int64_t grad_accum = 1;
  double grad_clip = 1.0;  // 0 = off
  LrSchedule lr;
};

// train.grad_accum, train.grad_clip and the learning-rate schedule.
StepOptions step_options_from_config(const Config& config);

struct StepResult {
  bool finite = true;   // false: a micro-batch's loss was NaN or inf and the step was skipped
  double loss = 0.0;    // mean over the micro-batches
  diffusion::LossTerms last;       // the last micro-batch's terms, for logging (undefined when skipped)
  int64_t tokens = 0;   // padded tokens of the micro-batches drawn
  double grad_norm = 0.0, lr = 0.0;
};

// One optimizer step over options.grad_accum batches from `next_batch` (fewer are drawn when a loss
// is not finite). Advances state.step, skipped or not.
StepResult train_step(TrainState& state, const std::function<data::Batch()>& next_batch, const StepOptions& options,
                      at::Generator generator);

}  // namespace mds::train
