#include "model/batch_tensors.h"

#include <ATen/ops/from_blob.h>

#include <vector>

namespace mds::model {

using data::Batch;

namespace {

// One copy from host vectors; from_blob does not own the memory, so the tensor is materialised
// (to its final dtype) before the vector goes away.
at::Tensor to_long(const std::vector<int32_t>& v, std::vector<int64_t> shape, c10::Device device) {
  at::Tensor t = at::from_blob(const_cast<int32_t*>(v.data()), shape, at::TensorOptions().dtype(at::kInt));
  return t.to(device, at::kLong, /*non_blocking=*/false, /*copy=*/true);
}

at::Tensor to_bool(const std::vector<uint8_t>& v, std::vector<int64_t> shape, c10::Device device) {
  at::Tensor t = at::from_blob(const_cast<uint8_t*>(v.data()), shape, at::TensorOptions().dtype(at::kByte));
  return t.to(device, at::kBool, false, true);
}

}  // namespace

BatchTensors to_tensors(const Batch& batch, c10::Device device) {
  const std::vector<int64_t> bl{batch.batch_size, batch.length};
  BatchTensors out;
  out.ids_BL = to_long(batch.ids, bl, device);
  out.trg_mask_BL = to_bool(batch.trg_mask, bl, device);
  out.key_mask_BL = to_bool(batch.key_mask, bl, device);
  out.global_mask_BL = to_bool(batch.global_mask, bl, device);
  out.src_len_B = to_long(batch.src_len, {batch.batch_size}, device);
  out.trg_len_B = to_long(batch.trg_len, {batch.batch_size}, device);
  out.src_region = batch.src_region;
  out.trg_region = batch.trg_region;
  return out;
}

}  // namespace mds::model
