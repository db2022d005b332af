#include "train/grad_reducer.h"

#include "core/error.h"

namespace mds::train {

GradientReducer::GradientReducer(runtime::Collective& collective, std::vector<torch::Tensor> params, int64_t bucket_bytes)
    : collective_(collective), params_(std::move(params)), slots_(params_.size()) {
  for (std::size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& p = params_[k];
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    const bool fits = !buckets_.empty() && buckets_.back().flat.scalar_type() == p.scalar_type() &&
                      buckets_.back().flat.device() == p.device() &&
                      (buckets_.back().flat.numel() * static_cast<int64_t>(p.element_size()) + bytes <= bucket_bytes);
    if (!fits) {
      buckets_.emplace_back();
      buckets_.back().flat = torch::zeros({0}, p.options().requires_grad(false));
    }
    Bucket& b = buckets_.back();
    slots_[k] = Slot{buckets_.size() - 1, b.flat.numel(), false};
    b.params.push_back(k);
    b.flat = torch::zeros({b.flat.numel() + p.numel()}, b.flat.options());
  }
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
  const torch::Tensor& held = params_[i].grad();
  put(i, held.defined() ? held + grad : grad);
  start_ready_buckets();
}

void GradientReducer::put(std::size_t i, const torch::Tensor& full) {
  Slot& s = slots_[i];
  Bucket& b = buckets_[s.bucket];
  b.flat.narrow(0, s.offset, params_[i].numel()).copy_(full.reshape({-1}));
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
    if (slots_[i].ready) continue;
    const torch::Tensor& held = params_[i].grad();
    put(i, held.defined() ? held : torch::zeros_like(params_[i]));
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
