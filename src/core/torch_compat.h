// The one place that knows which LibTorch it is built against: Debian's 1.13 (CPU, CI) or the 2.x
// of the GPU machine. Code elsewhere uses these names instead of testing versions itself.
#pragma once

#include <torch/version.h>

#define MDS_TORCH_VERSION (TORCH_VERSION_MAJOR * 100 + TORCH_VERSION_MINOR)

// LibTorch >= 2.0 exposes scaled_dot_product_attention with a per-call scale and the grouped GEMM
// entry points of later releases; 1.13 has neither.
#define MDS_TORCH_HAS_SDPA (MDS_TORCH_VERSION >= 200)
