// safetensors, read and written by us (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets": [b, e]},
// "__metadata__": {str: str}}, then the raw little-endian tensor bytes. Python's safetensors (and so
// the whole PyTorch ecosystem) reads what we write.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace mds::io {

using TensorMap = std::map<std::string, at::Tensor>;  // sorted by name: files are reproducible
using Metadata = std::map<std::string, std::string>;

// Writes atomically (temporary file, fsync, rename). Tensors may live on any device and be
// non-contiguous; supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL.
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// Reads every tensor onto the CPU. Errors name the file and what is wrong (truncated, bad header,
// offsets out of range or overlapping, unknown dtype).
TensorMap load_safetensors(const std::string& path, Metadata* metadata = nullptr);

}  // namespace mds::io
