// Timestep sampling for training (docs/math.md eq. T1-T2): uniform, and DiffuSeq's
// LossSecondMomentResampler (diffuseq/step_sample.py).
//
// Dimensions: B batch; T steps; H history entries per step.
//
// The history of step t is kept oldest first, as DiffuSeq's shift buffer (once full, the oldest
// entry is dropped and the new loss goes last), so that the [T, H] state written to a checkpoint
// fully determines what the next update does.
#include "diffusion/t_sampler.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mds::diffusion {

namespace {

c10::optional<at::Generator> optional_generator(const at::Generator& generator) {
  if (!generator.defined()) return c10::nullopt;
  MDS_CHECK(generator.device().is_cpu(),
            "TimestepSampler: the generator must be a CPU generator, got ", generator.device());
  return generator;
}

}  // namespace

TimestepSampler::TimestepSampler(std::string kind, int64_t steps, int64_t history,
                                 double uniform_prob)
    : kind_(std::move(kind)), steps_(steps), history_(history), uniform_prob_(uniform_prob) {
  MDS_CHECK(kind_ == "uniform" || kind_ == "lossaware", "t sampler: unknown kind \"", kind_,
            "\" (known: uniform, lossaware)");
  MDS_CHECK(steps_ >= 1, "t sampler: steps must be >= 1, got ", steps_);
  MDS_CHECK(history_ >= 1, "t sampler: history must be >= 1, got ", history_);
  MDS_CHECK(uniform_prob_ >= 0.0 && uniform_prob_ <= 1.0,
            "t sampler: uniform_prob must be in [0, 1], got ", uniform_prob_);
  losses_.assign(static_cast<std::size_t>(steps_ * history_), 0.0);
  counts_.assign(static_cast<std::size_t>(steps_), 0);
}

bool TimestepSampler::warmed_up() const {
  return std::all_of(counts_.begin(), counts_.end(), [&](int64_t c) { return c == history_; });
}

TimestepSampler::Draw TimestepSampler::sample(int64_t batch, at::Generator generator) {
  MDS_CHECK(batch >= 0, "t sampler: batch must be >= 0, got ", batch);
  flush();
  const auto gen = optional_generator(generator);
  Draw draw;
  if (kind_ == "uniform" || !warmed_up()) {
    // T1: p(t) = 1/T, weight exactly 1 (DiffuSeq's lossaware is uniform until warm).
    draw.t_B = at::randint(steps_, {batch}, gen, at::TensorOptions().dtype(at::kLong));
    draw.weight_B = at::ones({batch}, at::TensorOptions().dtype(at::kFloat));
    return draw;
  }

  // T2: w_t = sqrt(mean_h loss_th^2), p = (1 - u) w / sum(w) + u / T.
  const std::size_t T = static_cast<std::size_t>(steps_), H = static_cast<std::size_t>(history_);
  std::vector<double> p(T);
  double total = 0.0;
  for (std::size_t t = 0; t < T; ++t) {
    double sum_sq = 0.0;
    for (std::size_t h = 0; h < H; ++h) sum_sq += losses_[t * H + h] * losses_[t * H + h];
    p[t] = std::sqrt(sum_sq / static_cast<double>(H));
    total += p[t];
  }
  // All-zero (or non-finite) history: no information, so stay uniform rather than divide by 0.
  const bool informative = total > 0.0 && std::isfinite(total);
  double mixed_total = 0.0;
  for (std::size_t t = 0; t < T; ++t) {
    const double w = informative ? p[t] / total : 1.0 / static_cast<double>(T);
    p[t] = w * (1.0 - uniform_prob_) + uniform_prob_ / static_cast<double>(T);
    mixed_total += p[t];
  }
  for (std::size_t t = 0; t < T; ++t)
    p[t] /= mixed_total;  // p = w / sum(w), as DiffuSeq's sample()
  std::vector<double> cdf(T);
  double acc = 0.0;
  for (std::size_t t = 0; t < T; ++t) cdf[t] = (acc += p[t]);

  // Inverse-CDF draws from float64 uniforms: the same t's for the same generator state.
  at::Tensor u_B = at::rand({batch}, gen, at::TensorOptions().dtype(at::kDouble));
  draw.t_B = at::empty({batch}, at::TensorOptions().dtype(at::kLong));
  at::Tensor weight64_B = at::empty({batch}, at::TensorOptions().dtype(at::kDouble));
  const double* u = u_B.data_ptr<double>();
  int64_t* t_out = draw.t_B.data_ptr<int64_t>();
  double* w_out = weight64_B.data_ptr<double>();
  for (int64_t b = 0; b < batch; ++b) {
    const double target = u[b] * acc;
    auto it = std::upper_bound(cdf.begin(), cdf.end(), target);
    std::size_t t = static_cast<std::size_t>(it - cdf.begin());
    if (t >= T) {  // u * acc rounded up to the last bound: the last step of nonzero probability
      t = T - 1;
      while (t > 0 && p[t] <= 0.0) --t;
    }
    t_out[b] = static_cast<int64_t>(t);
    w_out[b] = 1.0 / (static_cast<double>(T) * p[t]);  // importance weight 1 / (T p_t)
  }
  draw.weight_B = weight64_B.to(at::kFloat);
  return draw;
}

void TimestepSampler::update(const at::Tensor& t_B, const at::Tensor& loss_B) {
  MDS_CHECK(t_B.defined() && loss_B.defined() && t_B.dim() == 1 && loss_B.dim() == 1 &&
                t_B.size(0) == loss_B.size(0),
            "t sampler update: t_B and loss_B must be [B] of the same B, got ",
            t_B.defined() ? t_B.sizes() : at::IntArrayRef{}, " and ",
            loss_B.defined() ? loss_B.sizes() : at::IntArrayRef{});
  at::Tensor t_cpu = t_B.detach().to(at::kCPU, at::kLong).contiguous();
  at::Tensor loss_cpu = loss_B.detach().to(at::kCPU, at::kDouble).contiguous();
  const int64_t* t = t_cpu.data_ptr<int64_t>();
  const double* loss = loss_cpu.data_ptr<double>();
  const std::size_t H = static_cast<std::size_t>(history_);
  for (int64_t b = 0; b < t_cpu.size(0); ++b) {
    MDS_CHECK(t[b] >= 0 && t[b] < steps_, "t sampler update: t = ", t[b], " out of [0, ", steps_,
              ")");
    double* row = &losses_[static_cast<std::size_t>(t[b]) * H];
    int64_t& count = counts_[static_cast<std::size_t>(t[b])];
    if (count == history_) {
      std::copy(row + 1, row + H, row);  // shift out the oldest loss
      row[H - 1] = loss[b];
    } else {
      row[count] = loss[b];
      ++count;
    }
  }
}

void TimestepSampler::update_later(const at::Tensor& t_B, const at::Tensor& loss_B, const at::Tensor& skip) {
  MDS_CHECK(t_B.defined() && loss_B.defined(), "t sampler update: t_B and loss_B must be defined");
  pending_.push_back({t_B.detach().to(at::kCPU), HostCopy(loss_B.detach()),
                      skip.defined() ? HostCopy(skip.detach()) : HostCopy()});
}

void TimestepSampler::flush() {
  std::vector<Pending> pending;
  pending.swap(pending_);
  for (Pending& p : pending) {
    const at::Tensor& skip = p.skip.get();
    if (skip.defined() && skip.item<bool>()) continue;
    update(p.t_B, p.loss_B.get());
  }
}

at::Tensor TimestepSampler::history_tensor() const {
  MDS_CHECK(pending_.empty(), "t sampler: flush() the pending updates before reading the state");
  at::Tensor out = at::empty({steps_, history_}, at::TensorOptions().dtype(at::kDouble));
  std::copy(losses_.begin(), losses_.end(), out.data_ptr<double>());
  return out;
}

at::Tensor TimestepSampler::counts_tensor() const {
  MDS_CHECK(pending_.empty(), "t sampler: flush() the pending updates before reading the state");
  at::Tensor out = at::empty({steps_}, at::TensorOptions().dtype(at::kLong));
  std::copy(counts_.begin(), counts_.end(), out.data_ptr<int64_t>());
  return out;
}

void TimestepSampler::load(const at::Tensor& history, const at::Tensor& counts) {
  pending_.clear();
  MDS_CHECK(history.defined() && history.dim() == 2 && history.size(0) == steps_ &&
                history.size(1) == history_,
            "t sampler load: history must be [", steps_, ", ", history_, "], got ",
            history.defined() ? history.sizes() : at::IntArrayRef{});
  MDS_CHECK(counts.defined() && counts.dim() == 1 && counts.size(0) == steps_,
            "t sampler load: counts must be [", steps_, "], got ",
            counts.defined() ? counts.sizes() : at::IntArrayRef{});
  at::Tensor h = history.detach().to(at::kCPU, at::kDouble).contiguous();
  at::Tensor c = counts.detach().to(at::kCPU, at::kLong).contiguous();
  const int64_t* cp = c.data_ptr<int64_t>();
  for (int64_t t = 0; t < steps_; ++t) {
    MDS_CHECK(cp[t] >= 0 && cp[t] <= history_, "t sampler load: count of t = ", t, " is ", cp[t],
              ", outside [0, ", history_, "]");
  }
  std::copy(h.data_ptr<double>(), h.data_ptr<double>() + steps_ * history_, losses_.begin());
  std::copy(cp, cp + steps_, counts_.begin());
}

}  // namespace mds::diffusion
