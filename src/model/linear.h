// A torch::nn::Linear applied through ATen's linear. The C++ frontend's own functional::linear runs a
// 3-D input as a matmul followed by `+= bias`: under autocast that adds the float32 bias to the bf16
// product in a separate mixed-dtype kernel (the largest kernel after the expert GEMMs when sampling
// 100 sentences: 22.9 of 191 ms of model kernels, H200). ATen's linear is what autocast casts (the bias
// too), and it folds a contiguous 3-D input into one addmm with the bias in the GEMM.
#pragma once

#include <torch/nn/modules/linear.h>

namespace mds::model {

inline torch::Tensor linear(const torch::nn::Linear& m, const torch::Tensor& x) {
  return torch::linear(x, m->weight, m->bias);
}

}  // namespace mds::model
