// Compute precision: the dtype the model's forward passes run in (train.precision). Whatever it is,
// the master weights, the optimizer state, the router, softmax statistics, the losses and the
// sampler's state stay float32 (docs/architecture.md, "Precision").
#pragma once

#include <c10/core/Device.h>

#include <optional>
#include <string>

#include "core/config.h"
#include "core/torch_compat.h"

namespace mds::runtime {

enum class Precision { fp32, bf16 };

// "auto" -> bf16 on CUDA, fp32 elsewhere; "fp32"; "bf16" (an error off CUDA: the CPU attention
// kernel computes in float32 or float64 only).
Precision resolve_precision(const std::string& name, c10::Device device);
// The same for a key of `config` (train.precision): errors name the key and where it was set
// (file:line, --set).
Precision resolve_precision(const Config& config, const std::string& key, c10::Device device);

const char* to_string(Precision precision);  // "fp32", "bf16"

// RAII around the model's forward passes (and the losses built on them): bf16 autocast on the
// device's type for bf16, nothing for fp32. Backward passes and optimizer steps run outside it.
class PrecisionScope {
 public:
  PrecisionScope(Precision precision, c10::Device device);
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  std::optional<compat::AutocastScope> autocast_;
};

}  // namespace mds::runtime
