// Optimisation state: AdamW, the learning-rate schedule and the EMA of the weights, each with its
// state as named tensors so that a checkpoint restores it exactly (docs/math.md eq. O1-O3).
//
// AdamW is ours rather than torch::optim::AdamW because LibTorch's keys its state by tensor address
// and changed that layout between versions; the update is the same (decoupled weight decay, bias
// correction), checked against torch::optim::AdamW in tests/optim_test.cpp.
//
// Two paths, one result. On a GPU with LibTorch >= 2.1 (compat::kHasFusedAdamW) AdamW is one fused
// multi-tensor kernel family, the EMA and the clip are _foreach_ ops, and nothing reads a value back
// to the host: a step to skip (NaN or inf) is a device flag that the kernels obey. Elsewhere (the CPU,
// LibTorch 1.13) the same formulas run one tensor at a time, where reading the flag costs nothing.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/config.h"

namespace mds::train {

struct AdamWOptions {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// train.lr, train.adam_beta1/2, train.adam_eps, train.weight_decay.
AdamWOptions adamw_options_from_config(const Config& c);

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options);
  // Parameters without a gradient are left alone. `skip` (optional, a 0-dim bool tensor on the
  // parameters' device): when true nothing changes, the step count included. `grad_divisor`
  // (optional, a float32 0-dim tensor on that device, clip_divisor's): the gradients are divided by it
  // first, inside the fused kernels on the multi-tensor path (the clip costs no pass of its own).
  void step(double lr, const torch::Tensor& skip = {}, const torch::Tensor& grad_divisor = {});
  void zero_grad();
  int64_t steps() const;  // reads the device's count on the fused path (a sync: for checkpoints)
  bool fused() const { return fused_; }

  std::map<std::string, torch::Tensor> state() const;  // "<name>.exp_avg", "<name>.exp_avg_sq", "step"
  void load_state(const std::map<std::string, torch::Tensor>& state, const std::string& origin);

 private:
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;  // float32 like the master weights (float64 for float64 ones)
  AdamWOptions options_;
  bool fused_ = false;
  int64_t steps_ = 0;        // the per-tensor path's count
  torch::Tensor step_t_;     // the fused path's: float32 0-dim on the device, as torch.optim keeps it
};

// O2: linear warm-up from 0 to `peak` over `warmup` steps, then linear decay to `min_lr` at `total`.
double learning_rate(int64_t step, int64_t total, int64_t warmup, double peak, double min_lr);

// O2 as a run configures it: train.lr, train.warmup_steps and train.min_lr over train.steps, or over
// train.max_minutes: after the warm-up the decay follows whichever is further along, the steps or the
// wall-clock budget, so a run on a budget ends at min_lr when its time is up.
struct LrSchedule {
  int64_t total = 1, warmup = 0;
  double peak = 1e-4, min_lr = 0.0;
  double budget_seconds = 0.0;  // 0 = steps only
  double at(int64_t step, double elapsed_seconds = 0.0) const;
};
LrSchedule lr_schedule_from_config(const Config& c);

// O3: ema <- decay * ema + (1 - decay) * weight, in float32, for every parameter, computed as
// lerp(ema, weight, 1 - decay): one pass over the averages and the weights (one multi-tensor kernel
// family on a GPU), no copy. With warm-up, update n (0-based) uses min(decay, (1 + n) / (10 + n)).
// A step that AdamW skipped (NaN or inf) left the weights as they were; the average takes them in as
// on any step (timm's ModelEmaV2 does the same under a skipping GradScaler), so the update has no
// flag to obey and nothing to read back.
class Ema {
 public:
  Ema(const torch::nn::Module& module, double decay, bool warmup = false);
  // `n`: the number of updates before this one (the optimizer step - 1); only warm-up reads it.
  void update(const torch::nn::Module& module, int64_t n = 0);
  double decay_at(int64_t n) const;
  const std::map<std::string, torch::Tensor>& weights() const { return weights_; }
  void load(const std::map<std::string, torch::Tensor>& weights, const std::string& origin);
  double decay() const { return decay_; }

 private:
  double decay_;
  bool warmup_;
  std::map<std::string, torch::Tensor> weights_;
};

// Global L2 norm of the gradients (a float32 0-dim tensor on their device; undefined without any).
// No host sync on the multi-tensor path.
// Expert parallelism: `params` are the replicated parameters, `sharded` this rank's shards of the
// others, and `sum_over_ranks` all-reduces a 0-dim tensor: the norm is the whole model's, the same on
// every rank.
torch::Tensor gradient_norm(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& sharded = {},
                            const std::function<void(torch::Tensor&)>& sum_over_ranks = {});

// What to divide gradients of global norm `norm` by to clip them to `max_norm`: (norm + 1e-6) /
// max_norm where norm > max_norm and finite, 1 elsewhere (dividing by 1 changes nothing). A float32
// 0-dim tensor on norm's device, decided there; undefined when max_norm is 0 (no clipping) or norm is.
torch::Tensor clip_divisor(const torch::Tensor& norm, double max_norm);

// Both, with the gradients divided in place (where no AdamW step follows to do it): the norm before
// clipping.
torch::Tensor clip_gradients(const std::vector<torch::Tensor>& params, double max_norm,
                             const std::vector<torch::Tensor>& sharded = {},
                             const std::function<void(torch::Tensor&)>& sum_over_ranks = {});

}  // namespace mds::train
