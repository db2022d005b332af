// How far apart two sets of named tensors are (two checkpoints of runs that should agree: a resumed
// run and an uninterrupted one, N processes and one): `moe-diffuseq model compare`.
#pragma once

#include <string>
#include <vector>

#include "io/safetensors.h"

namespace mds::io {

struct TensorDifference {
  std::string name;
  double max_abs = 0.0;  // largest |a - b| (infinity where shapes or dtypes differ)
  double max_rel = 0.0;  // largest |a - b| / max(|a|, |b|, tiny)
  std::string problem;   // "" or what makes the two incomparable (missing, shape, dtype)
};

// Every name of either map, sorted; both compared in float64.
std::vector<TensorDifference> compare_tensors(const TensorMap& a, const TensorMap& b);

}  // namespace mds::io
