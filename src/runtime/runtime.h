// The run's runtime: where the model computes, in which precision, on how many CPU threads. Training,
// generation and the benchmarks resolve it here from the same keys (train.device, train.precision,
// train.threads), so the three cannot disagree; the distributed set-up (rank, world size, the
// process group) will join it here.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "core/config.h"
#include "runtime/precision.h"

namespace mds::runtime {

struct Runtime {
  c10::Device device{c10::kCPU};
  Precision precision = Precision::fp32;
  int threads = 1;  // LibTorch intra-op threads in effect

  // "cuda:0 in bf16" for logs.
  std::string describe() const;
};

// Resolves train.device, train.precision (for that device; errors name the key and where it was
// set) and train.threads of `config`, and applies the thread count to LibTorch.
Runtime resolve_runtime(const Config& config);

}  // namespace mds::runtime
