// One optimizer step, and the state it reads and changes: the one place a training step is written.
// train() runs it in its loop; bench/train_step_bench times it.
//
// A step (train.grad_accum = A micro-batches):
//   for each micro-batch: batch to the device, t ~ the t-sampler, forward process + denoiser + loss
//   under the runtime's precision (autocast for bf16), backward of loss / A, the loss-aware
//   t-sampler's update (where configured);
//   then (data-parallel) the gradients averaged over the ranks, gradient clipping (train.grad_clip),
//   AdamW at the schedule's learning rate, the EMA update.
// Nothing in a step waits for the device: whether a loss or the gradient norm was NaN or inf is a
// device flag that AdamW obeys (the step is skipped: no weight or moment changes; the EMA takes in
// the unchanged weights), and the logged values stay on the device until the trainer writes a log line.
// Every random draw (t, noise, dropout) comes from the generator passed in, so that a run that saves
// and restores it repeats itself exactly.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "data/batcher.h"
#include "diffusion/loss.h"
#include "diffusion/schedule.h"
#include "diffusion/t_sampler.h"
#include "model/denoiser.h"
#include "runtime/runtime.h"
#include "train/expert_shards.h"
#include "train/grad_reducer.h"
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
// Expert parallelism: the model holds shard `expert_shard` of `expert_shards` of its experts.
TrainState make_train_state(const Config& config, int64_t vocab_size, const runtime::Runtime& runtime,
                            int64_t expert_shards = 1, int64_t expert_shard = 0);

// Where a step's time goes (train_step_bench --profile): host seconds between marks, summed per phase.
// With `sync` the device is synchronised before each mark, so a phase's time includes its device work;
// without, it is the host's time to issue the phase (the launch overhead).
struct PhaseClock {
  bool sync = false;
  c10::Device device{c10::kCPU};
  std::vector<std::pair<std::string, double>> seconds;  // phases in the order first seen

  void start();
  void mark(const std::string& phase);

 private:
  std::chrono::steady_clock::time_point last_;
};

struct StepOptions {
  int64_t grad_accum = 1;
  double grad_clip = 1.0;  // 0 = off
  LrSchedule lr;
  PhaseClock* clock = nullptr;  // a profile of the step's phases; null = none
  // Data-parallel: the gradients are averaged over the ranks, in buckets while the last micro-batch's
  // backward pass runs, before clipping, so every rank takes the same optimizer step. Null = one process.
  GradientReducer* reducer = nullptr;
  // Expert parallelism: the shards left out of the reducer, averaged and clipped with the group.
  const ExpertShards* experts = nullptr;
  // Called before each micro-batch with its index (dist.seed_per_batch: reseeds the generators).
  std::function<void(int64_t micro)> before_micro;
};

// train.grad_accum, train.grad_clip and the learning-rate schedule.
StepOptions step_options_from_config(const Config& config);

struct StepResult {
  // On the device (0-dim), read when logged:
  torch::Tensor skipped;    // bool: a loss or the gradient norm was NaN or inf, and nothing was updated
  torch::Tensor loss;       // float32: the mean over the micro-batches
  torch::Tensor grad_norm;  // float32: before clipping (undefined when no parameter has a gradient)
  diffusion::LossTerms last;  // the last micro-batch's terms
  int64_t tokens = 0;       // padded tokens of the micro-batches drawn
  int64_t real_tokens = 0;  // of which not padding
  double lr = 0.0;

  // The logged values as one float32 [kNumLogFields] tensor on the device, indexed by LogField.
  torch::Tensor log_row() const;
};
enum LogField : int {
  kLogLoss, kLogMse, kLogRounding, kLogPrior, kLogX0Ce, kLogLength, kLogRewrite, kLogAbsorb, kLogMoeAux, kLogMoeZ,
  kLogGradNorm, kLogSkipped, kLogMoeDropped, kNumLogFields
};

// One optimizer step over options.grad_accum batches from `next_batch`. Advances state.step,
// skipped or not.
StepResult train_step(TrainState& state, const std::function<data::Batch()>& next_batch, const StepOptions& options,
                      at::Generator generator);

}  // namespace mds::train
