#include "runtime/precision.h"

#include "core/error.h"

namespace mds::runtime {

namespace {

// `where` ("path:line: ", "--set: " or empty) and `what` (the key) name the setting in errors.
Precision resolve(const std::string& name, c10::Device device, const std::string& where,
                  const std::string& what) {
  if (name == "fp32") return Precision::fp32;
  if (name == "auto") return device.is_cuda() ? Precision::bf16 : Precision::fp32;
  if (name == "bf16") {
    // bf16 autocast on the CPU would hand bf16 q/k/v to the sliding-attention reference, which
    // computes in float32 or float64 only; CPU bf16 matrix products are slow besides.
    MDS_CHECK(device.is_cuda(), where, what, " = \"bf16\" needs a CUDA device, but the model runs on ", device,
              " (the CPU kernels compute in float32 or float64); use \"auto\" (bf16 on GPU, fp32 on CPU) or "
              "\"fp32\"");
    return Precision::bf16;
  }
  fail(where, what, " = \"", name, "\" is not one of \"auto\", \"fp32\", \"bf16\"");
}

}  // namespace

Precision resolve_precision(const std::string& name, c10::Device device) {
  return resolve(name, device, "", "precision");
}

Precision resolve_precision(const Config& config, const std::string& key, c10::Device device) {
  // origin() is "default", "--set" or "path:line".
  return resolve(config.get_string(key), device, config.origin(key) + ": ", key);
}

const char* to_string(Precision precision) {
  switch (precision) {
    case Precision::fp32: return "fp32";
    case Precision::bf16: return "bf16";
  }
  return "?";
}

PrecisionScope::PrecisionScope(Precision precision, c10::Device device) {
  if (precision == Precision::bf16) autocast_.emplace(device.type(), true, at::kBFloat16);
}

}  // namespace mds::runtime
