#include "train/optim.h"

#include <algorithm>
#include <cmath>

#include "core/config.h"
#include "core/error.h"

namespace mds::train {

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
  for (const auto& [name, p] : params_) {
    exp_avg_.push_back(torch::zeros_like(p, p.options().dtype(torch::kFloat)));
    exp_avg_sq_.push_back(torch::zeros_like(p, p.options().dtype(torch::kFloat)));
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    if (!p.grad().defined()) continue;
    auto g = p.grad().to(torch::kFloat);
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
  out["step"] = torch::tensor(steps_, torch::kLong);
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
  const double d = decay_at(n);
  for (const auto& p : module.named_parameters()) {
    auto& w = weights_.at(p.key());
    w.mul_(d).add_(p.value().detach().to(torch::kFloat), 1.0 - d);
  }
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

double clip_gradients(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().to(torch::kFloat).norm());
  if (norms.empty()) return 0.0;
  const double norm = torch::stack(norms).norm().item<double>();  // one device sync, not one per tensor
  if (max_norm > 0 && norm > max_norm && std::isfinite(norm)) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return norm;
}

}  // namespace mds::train
