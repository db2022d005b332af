// A layer norm that runs in the dtype of its input. Under bf16 autocast, LibTorch runs layer_norm in
// float32: a bf16 residual stream would be cast up before every norm and back down before every
// projection. In bf16 the kernel still accumulates its statistics in float32.
#pragma once

#include <torch/nn/modules/normalization.h>

#include "core/cast_cache.h"
#include "core/torch_compat.h"

namespace mds::model {

inline torch::Tensor layer_norm_as_input(torch::nn::LayerNorm ln, const torch::Tensor& x) {
  const auto type = x.scalar_type();
  if (type == torch::kFloat || type == torch::kDouble) return ln->forward(x);
  compat::NoAutocast as_given(x);
  return torch::layer_norm(x, ln->options.normalized_shape(), core::cast_weight(ln->weight, type),
                           core::cast_weight(ln->bias, type),
                           ln->options.eps());
}

}  // namespace mds::model
