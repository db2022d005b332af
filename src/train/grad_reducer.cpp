#include "train/grad_reducer.h"

#include "core/error.h"

namespace mds::train {

GradientReducer::GradientReducer(runtime::Collective& collective, std::vector<torch::Tensor> params, int64_t bucket_bytes)
    : collective_(collective), params_(std::move(params)), slots_(params_.size()) {
  // The buckets' members and offsets first, then one buffer each.
  std::vector<int64_t> sizes;
  for (std::size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& p = params_[k];
    const auto element = static_cast<int64_t>(p.element_size());
    const bool fits = !buckets_.empty() && params_[buckets_.back().params.front()].scalar_type() == p.scalar_type() &&
                      params_[buckets_.back().params.front()].device() == p.device() &&
                      (sizes.back() + p.numel()) * element <= bucket_bytes;
    if (!fits) {
      buckets_.emplace_back();
      sizes.push_back(0);
    }
    slots_[k] = Slot{buckets_.size() - 1, sizes.back(), false};
    buckets_.back().params.push_back(k);
    sizes.back() += p.numel();
  }
  for (std::size_t b = 0; b < buckets_.size(); ++b)
    buckets_[b].flat = torch::zeros({sizes[b]}, params_[buckets_[b].params.front()].options().requires_grad(false));
  for (std::size_t k = 0; k < params_.size(); ++k) {
    if (!params_[k].requires_grad()) continue;
    hooks_.push_back(params_[k].register_hook([this, k](const torch::Tensor& grad) { on_grad(k, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  std::size_t h = 0;
  for (std::size_t k = 0; k < params_.size(); ++k)
    if (params_[k].requires_grad()) params_[k].remove_hook(hooks_.at(h++));
}

void GradientReducer::arm() {
  armed_ = true;
  next_bucket_ = 0;
  for (Slot& s : slots_) s.ready = false;
  for (Bucket& b : buckets_) b.ready = 0;
}

void GradientReducer::on_grad(std::size_t i, const torch::Tensor& grad) {
  if (!armed_ || slots_[i].ready) return;
  // The hook runs before autograd adds `grad` to .grad: what the step's earlier micro-batches left
  // there is added here.
  put(i, grad, params_[i].grad());
  start_ready_buckets();
}

void GradientReducer::put(std::size_t i, const torch::Tensor& grad, const torch::Tensor& held) {
  Slot& s = slots_[i];
  Bucket& b = buckets_[s.bucket];
  torch::Tensor slice = b.flat.narrow(0, s.offset, params_[i].numel());
  if (grad.defined()) slice.copy_(grad.reshape({-1}));
  else slice.zero_();
  if (held.defined()) slice.add_(held.reshape({-1}));
  s.ready = true;
  ++b.ready;
}

void GradientReducer::start_ready_buckets() {
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].ready == buckets_[next_bucket_].params.size()) {
    collective_.start_all_reduce_sum(buckets_[next_bucket_].flat);
    ++next_bucket_;
  }
}

void GradientReducer::finish() {
  MDS_CHECK(armed_, "GradientReducer::finish without arm");
  armed_ = false;
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!slots_[i].ready) put(i, torch::Tensor(), params_[i].grad());
  }
  start_ready_buckets();
  collective_.wait_all("gradient all-reduce");
  const double world = static_cast<double>(collective_.world_size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Slot& s = slots_[i];
    const torch::Tensor mean = buckets_[s.bucket].flat.narrow(0, s.offset, params_[i].numel()).view(params_[i].sizes()) / world;
    torch::Tensor& g = params_[i].mutable_grad();
    if (g.defined()) g.copy_(mean);
    else g = mean.clone();
  }
}

}  // namespace mds::train
