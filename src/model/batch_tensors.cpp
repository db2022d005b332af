#include "model/batch_tensors.h"

#include <ATen/ATen.h>

#include <vector>

#include "data/special_tokens.h"

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

BatchTensors limit_target_region(const BatchTensors& b, const at::Tensor& keep_B) {
  const int64_t B = b.ids_BL.size(0), L = b.ids_BL.size(1), first = b.src_region + 2;
  const at::Tensor keep = keep_B.to(b.ids_BL.device(), at::kLong).clamp(1, b.trg_region);
  const int64_t region = keep.max().item<int64_t>();  // one sync: the new length
  const at::Tensor pos_1L = at::arange(L, b.ids_BL.options()).unsqueeze(0);
  const at::Tensor gone_BL = (pos_1L >= first + keep.view({B, 1})).logical_and(b.trg_mask_BL);
  BatchTensors out = b;
  const int64_t L2 = first + region;
  out.ids_BL = b.ids_BL.masked_fill(gone_BL, data::SpecialTokens::pad).narrow(1, 0, L2).contiguous();
  out.trg_mask_BL = b.trg_mask_BL.logical_and(gone_BL.logical_not()).narrow(1, 0, L2).contiguous();
  out.key_mask_BL = b.key_mask_BL.logical_and(gone_BL.logical_not()).narrow(1, 0, L2).contiguous();
  out.global_mask_BL = b.global_mask_BL.logical_and(gone_BL.logical_not()).narrow(1, 0, L2).contiguous();
  out.trg_len_B = (keep - 1).to(b.trg_len_B.defined() ? b.trg_len_B.device() : keep.device());
  out.trg_region = region;
  return out;
}

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
