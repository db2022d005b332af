#include "train/optim.h"

#include <algorithm>
#include <cmath>

#include "core/config.h"
#include "core/error.h"
#include "core/torch_compat.h"

namespace mds::train {

namespace {

// The multi-tensor path: LibTorch has it and the tensors are float32 on a GPU (or, for AdamW,
// float64: the kernels take it, and a float64 test compares them with the per-tensor path).
bool multi_tensor_path(const std::vector<torch::Tensor>& tensors, bool allow_double = false) {
  if (!compat::kHasFusedAdamW || tensors.empty()) return false;
  const auto type = tensors[0].scalar_type();
  if (type != torch::kFloat && !(allow_double && type == torch::kDouble)) return false;
  for (const auto& t : tensors)
    if (!t.is_cuda() || t.scalar_type() != type) return false;
  return true;
}

// Optimizer state for a parameter: float32, or float64 for a float64 parameter.
torch::Tensor zero_state(const torch::Tensor& p) {
  return torch::zeros_like(p, p.options().dtype(p.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat));
}

// Whether a skip flag says skip; on the per-tensor path only (a host read).
bool skip_now(const torch::Tensor& skip) { return skip.defined() && skip.item<bool>(); }

}  // namespace

LrSchedule lr_schedule_from_config(const Config& c) {
  LrSchedule s;
  s.total = c.get_int("train.steps");
  s.warmup = c.get_int("train.warmup_steps");
  s.peak = c.get_float("train.lr");
  s.min_lr = c.get_float("train.min_lr");
  s.budget_seconds = 60.0 * c.get_float("train.max_minutes");
  return s;
}

double LrSchedule::at(int64_t step, double elapsed_seconds) const {
  const double by_steps = learning_rate(step, total, warmup, peak, min_lr);
  if (budget_seconds <= 0 || (warmup > 0 && step < warmup)) return by_steps;
  const double by_time = peak + (min_lr - peak) * std::min(1.0, std::max(0.0, elapsed_seconds / budget_seconds));
  // Both decay linearly from the peak: the lower one is the further along.
  return peak >= min_lr ? std::min(by_steps, by_time) : std::max(by_steps, by_time);
}

AdamWOptions adamw_options_from_config(const Config& c) {
  AdamWOptions adam;
  adam.lr = c.get_float("train.lr");
  adam.beta1 = c.get_float("train.adam_beta1");
  adam.beta2 = c.get_float("train.adam_beta2");
  adam.eps = c.get_float("train.adam_eps");
  adam.weight_decay = c.get_float("train.weight_decay");
  return adam;
}

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  std::vector<torch::Tensor> tensors;
  for (const auto& [name, p] : params_) {
    exp_avg_.push_back(zero_state(p));
    exp_avg_sq_.push_back(zero_state(p));
    tensors.push_back(p);
  }
  fused_ = multi_tensor_path(tensors, /*allow_double=*/true);
  if (fused_) step_t_ = torch::zeros({}, tensors[0].options().dtype(torch::kFloat));
}

int64_t AdamW::steps() const { return fused_ ? static_cast<int64_t>(step_t_.item<double>()) : steps_; }

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

void AdamW::step(double lr, const torch::Tensor& skip, const torch::Tensor& grad_divisor) {
  torch::NoGradGuard no_grad;
  if (fused_) {
    std::vector<torch::Tensor> p, g, m, v;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (!params_[i].second.grad().defined()) continue;
      p.push_back(params_[i].second);
      g.push_back(params_[i].second.grad());
      m.push_back(exp_avg_[i]);
      v.push_back(exp_avg_sq_[i]);
    }
    if (p.empty()) return;
    // As torch.optim.AdamW(fused=True): count the step, run the kernels (which do nothing where
    // found_inf is set), take the count back where they did nothing.
    const torch::Tensor found_inf = skip.defined() ? skip.to(torch::kFloat) : torch::Tensor();
    step_t_.add_(1.0);
    const std::vector<torch::Tensor> steps(p.size(), step_t_);
    compat::fused_adamw(p, g, m, v, steps, lr, options_.beta1, options_.beta2, options_.weight_decay, options_.eps,
                        found_inf.defined() ? found_inf : torch::zeros({}, step_t_.options()),
                        grad_divisor.defined() ? grad_divisor.to(torch::kFloat) : torch::Tensor());
    if (found_inf.defined()) step_t_.sub_(found_inf);
    return;
  }
  if (skip_now(skip)) return;
  ++steps_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    if (!p.grad().defined()) continue;
    auto g = p.grad().to(exp_avg_[i].scalar_type());
    if (grad_divisor.defined()) g = g / grad_divisor;
    // O1: decoupled weight decay, then the bias-corrected Adam step (as torch.optim.AdamW).
    if (options_.weight_decay != 0.0) p.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    auto denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bc2)).add_(options_.eps);
    auto update = exp_avg_[i] / denom;
    p.add_(update.to(p.scalar_type()), -lr / bc1);
  }
}

std::map<std::string, torch::Tensor> AdamW::state() const {
  std::map<std::string, torch::Tensor> out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    out[params_[i].first + ".exp_avg"] = exp_avg_[i];
    out[params_[i].first + ".exp_avg_sq"] = exp_avg_sq_[i];
  }
  out["step"] = torch::tensor(steps(), torch::kLong);
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& state, const std::string& origin) {
  torch::NoGradGuard no_grad;
  auto get = [&](const std::string& key, const torch::Tensor& like) {
    auto it = state.find(key);
    MDS_CHECK(it != state.end(), origin, ": optimizer state \"", key, "\" is missing");
    MDS_CHECK(it->second.sizes() == like.sizes(), origin, ": optimizer state \"", key, "\" has shape ",
              it->second.sizes(), ", expected ", like.sizes());
    return it->second;
  };
  for (std::size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(get(params_[i].first + ".exp_avg", exp_avg_[i]));
    exp_avg_sq_[i].copy_(get(params_[i].first + ".exp_avg_sq", exp_avg_sq_[i]));
  }
  auto it = state.find("step");
  MDS_CHECK(it != state.end(), origin, ": optimizer state \"step\" is missing");
  steps_ = it->second.item<int64_t>();
  if (fused_) step_t_.fill_(static_cast<double>(steps_));
}

double learning_rate(int64_t step, int64_t total, int64_t warmup, double peak, double min_lr) {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (total <= warmup) return peak;
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(total - warmup));
  return peak + (min_lr - peak) * progress;
}

Ema::Ema(const torch::nn::Module& module, double decay, bool warmup) : decay_(decay), warmup_(warmup) {
  for (const auto& p : module.named_parameters()) weights_[p.key()] = p.value().detach().to(torch::kFloat).clone();
}

double Ema::decay_at(int64_t n) const {
  if (!warmup_) return decay_;
  return std::min(decay_, (1.0 + static_cast<double>(n)) / (10.0 + static_cast<double>(n)));
}

void Ema::update(const torch::nn::Module& module, int64_t n) {
  torch::NoGradGuard no_grad;
  const double a = 1.0 - decay_at(n);
  std::vector<torch::Tensor> ema, weights;
  for (const auto& p : module.named_parameters()) {
    ema.push_back(weights_.at(p.key()));
    weights.push_back(p.value().detach());
  }
  if (multi_tensor_path(weights)) {
    compat::foreach_lerp_(ema, weights, a);
    return;
  }
  for (std::size_t i = 0; i < ema.size(); ++i) ema[i].lerp_(weights[i].to(torch::kFloat), a);
}

void Ema::load(const std::map<std::string, torch::Tensor>& weights, const std::string& origin) {
  torch::NoGradGuard no_grad;
  for (auto& [name, w] : weights_) {
    auto it = weights.find(name);
    MDS_CHECK(it != weights.end(), origin, ": EMA tensor \"", name, "\" is missing");
    MDS_CHECK(it->second.sizes() == w.sizes(), origin, ": EMA tensor \"", name, "\" has the wrong shape");
    w.copy_(it->second);
  }
}

torch::Tensor gradient_norm(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& sharded,
                            const std::function<void(torch::Tensor&)>& sum_over_ranks) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  const std::size_t replicated = grads.size();
  for (const auto& p : sharded)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return {};
  std::vector<torch::Tensor> norms;
  if (multi_tensor_path(grads)) norms = compat::foreach_norm(grads);
  else
    for (const auto& g : grads) norms.push_back(g.to(torch::kFloat).norm());
  if (!sum_over_ranks) return torch::stack(norms).norm().to(torch::kFloat);
  // Expert parallelism: the shards' squared norms summed over the ranks, the replicated ones once.
  const auto squares = [&](std::size_t from, std::size_t to) {
    torch::Tensor sum = torch::zeros({}, grads.front().options().dtype(torch::kFloat));
    for (std::size_t i = from; i < to; ++i) sum = sum + norms[i].to(torch::kFloat).square();
    return sum;
  };
  torch::Tensor shard_squares = squares(replicated, grads.size());
  sum_over_ranks(shard_squares);
  return (squares(0, replicated) + shard_squares).sqrt();
}

torch::Tensor clip_divisor(const torch::Tensor& norm, double max_norm) {
  if (max_norm <= 0 || !norm.defined()) return {};
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = norm.gt(max_norm).logical_and(norm.isfinite());
  return torch::where(clip, (norm + 1e-6) / max_norm, torch::ones_like(norm)).to(torch::kFloat);
}

torch::Tensor clip_gradients(const std::vector<torch::Tensor>& params, double max_norm,
                             const std::vector<torch::Tensor>& sharded,
                             const std::function<void(torch::Tensor&)>& sum_over_ranks) {
  torch::NoGradGuard no_grad;
  const torch::Tensor norm = gradient_norm(params, sharded, sum_over_ranks);
  const torch::Tensor divisor = clip_divisor(norm, max_norm);
  if (!divisor.defined()) return norm;
  std::vector<torch::Tensor> grads;
  for (const auto* list : {&params, &sharded})
    for (const auto& p : *list)
      if (p.grad().defined()) grads.push_back(p.grad());
  compat::foreach_mul_(grads, divisor.reciprocal());
  return norm;
}

}  // namespace mds::train
