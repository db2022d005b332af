// Input and output maps of the denoiser (DiffuSeq's TransformerNetModel, docs/math.md eq. D1-D3).
//
// Dimensions: B batch, L length, C embedding dim (model.embed_dim), D model dim, T time embedding dim.
#pragma once

#include <torch/torch.h>

namespace mds::model {

// Sinusoidal embedding of (float) model time t_B: [cos(t f_i), sin(t f_i)], f_i = 10000^(-i/(T/2)).
torch::Tensor timestep_embedding(const torch::Tensor& t_B, int64_t dim, double max_period = 10000.0);

// Linear(T, 4T) -> SiLU -> Linear(4T, D): time embedding to the model dimension.
class TimeMlpImpl : public torch::nn::Module {
 public:
  TimeMlpImpl(int64_t time_dim, int64_t dim);
  torch::Tensor forward(const torch::Tensor& t_B);  // -> [B, D]

 private:
  int64_t time_dim_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(TimeMlp);

// Linear(in, hidden) -> Tanh -> Linear(hidden, out): the up-projection C -> D and down-projection D -> C.
class ProjectionImpl : public torch::nn::Module {
 public:
  ProjectionImpl(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(Projection);

}  // namespace mds::model
