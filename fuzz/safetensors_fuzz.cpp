// The safetensors reader on any bytes: it returns tensors that cover the file's data exactly, or
// throws mds::Error naming the file (truncated, a bad header, offsets out of range, overlapping or
// leaving holes, an unknown dtype, a shape that does not match its bytes). Built only where CMake
// finds LibTorch (the reader makes at::Tensor), linked uninstrumented.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string path = mds::fuzz::write_scratch("input.safetensors", data, size);
  try {
    mds::io::Metadata metadata;
    const mds::io::TensorMap tensors = mds::io::load_safetensors(path, &metadata);
    int64_t bytes = 0;
    for (const auto& [name, tensor] : tensors) bytes += tensor.numel() * static_cast<int64_t>(tensor.element_size());
    if (bytes > static_cast<int64_t>(size)) __builtin_trap();  // more data than the file holds
  } catch (const mds::Error&) {
  }
  return 0;
}
