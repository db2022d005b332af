#include "model/embedding.h"

#include <cmath>

#include "model/linear.h"

namespace mds::model {

torch::Tensor timestep_embedding(const torch::Tensor& t_B, int64_t dim, double max_period) {
  TORCH_CHECK(dim % 2 == 0, "time embedding dimension must be even, got ", dim);
  const int64_t half = dim / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(t_B.device());
  auto freqs_H = torch::exp(-std::log(max_period) * torch::arange(half, opts) / static_cast<double>(half));
  auto args_BH = t_B.to(torch::kFloat).unsqueeze(1) * freqs_H.unsqueeze(0);
  return torch::cat({torch::cos(args_BH), torch::sin(args_BH)}, 1);  // cos first, as DiffuSeq
}

TimeMlpImpl::TimeMlpImpl(int64_t time_dim, int64_t dim) : time_dim_(time_dim) {
  fc1_ = register_module("fc1", torch::nn::Linear(time_dim, 4 * time_dim));
  fc2_ = register_module("fc2", torch::nn::Linear(4 * time_dim, dim));
}

torch::Tensor TimeMlpImpl::forward(const torch::Tensor& t_B) {
  auto e = timestep_embedding(t_B, time_dim_).to(fc1_->weight.scalar_type());
  return linear(fc2_, torch::silu(linear(fc1_, e)));
}

ProjectionImpl::ProjectionImpl(int64_t in, int64_t hidden, int64_t out) {
  fc1_ = register_module("fc1", torch::nn::Linear(in, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, out));
}

torch::Tensor ProjectionImpl::forward(const torch::Tensor& x) { return linear(fc2_, torch::tanh(linear(fc1_, x))); }

}  // namespace mds::model
