#include "model/batch_tensors.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/host_to_device.h"
#include "data/special_tokens.h"
#include "model/attention.h"

namespace mds::model {

using data::Batch;

namespace {

at::Tensor to_long(const std::vector<int32_t>& v, std::vector<int64_t> shape, c10::Device device) {
  const at::Tensor host = at::from_blob(const_cast<int32_t*>(v.data()), shape, at::TensorOptions().dtype(at::kInt));
  return to_device_async(host, device, at::kLong);
}

at::Tensor to_bool(const std::vector<uint8_t>& v, std::vector<int64_t> shape, c10::Device device) {
  const at::Tensor host = at::from_blob(const_cast<uint8_t*>(v.data()), shape, at::TensorOptions().dtype(at::kByte));
  return to_device_async(host, device, at::kBool);
}

// The flat indices of a mask's true entries.
at::Tensor true_rows(const std::vector<uint8_t>& mask, c10::Device device) {
  std::vector<int64_t> rows;
  for (std::size_t i = 0; i < mask.size(); ++i)
    if (mask[i] != 0) rows.push_back(static_cast<int64_t>(i));
  const auto n = static_cast<int64_t>(rows.size());
  return to_device_async(at::from_blob(rows.data(), {n}, at::TensorOptions().dtype(at::kLong)), device);
}

MaskFacts host_mask_facts(const data::Batch& batch) {
  MaskFacts f;
  f.max_globals = 0;
  f.key_padding = 0;
  f.empty_rows = 0;
  const auto B = static_cast<std::size_t>(batch.batch_size), L = static_cast<std::size_t>(batch.length);
  for (std::size_t b = 0; b < B; ++b) {
    int64_t globals = 0, keys = 0;
    for (std::size_t l = 0; l < L; ++l) {
      globals += batch.global_mask[b * L + l] != 0;
      keys += batch.key_mask[b * L + l] != 0;
    }
    if (keys < static_cast<int64_t>(L)) f.key_padding = 1;
    if (keys == 0) f.empty_rows = 1;
    f.max_globals = std::max(f.max_globals, globals);
  }
  return f;
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
  // The masks changed: their rows and facts again, once here rather than in every model call.
  out.trg_rows_N = out.trg_mask_BL.reshape({-1}).nonzero().squeeze(1);
  out.key_rows_N = out.key_mask_BL.reshape({-1}).nonzero().squeeze(1);
  out.facts = mask_facts(out.key_mask_BL, out.global_mask_BL);
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
  if (!batch.compact_start.empty()) out.compact_start_B = to_bool(batch.compact_start, {batch.batch_size}, device);
  out.trg_rows_N = true_rows(batch.trg_mask, device);
  out.key_rows_N = true_rows(batch.key_mask, device);
  out.facts = host_mask_facts(batch);
  out.src_region = batch.src_region;
  out.trg_region = batch.trg_region;
  return out;
}

at::Tensor source_aligned_x0(const BatchTensors& bt, const at::Tensor& anchor_BLC, const at::Tensor& m_C, int64_t stride,
                             const at::Tensor& blank_C) {
  MDS_CHECK(stride >= 1 && (stride == 1 || blank_C.defined()), "source_aligned_x0: a canvas stride of ", stride,
            " needs the empty places' embedding");
  const int64_t B = anchor_BLC.size(0), L = anchor_BLC.size(1), C = anchor_BLC.size(2);
  const int64_t first = bt.src_region + 2, n = std::min(stride * bt.src_region, L - first);
  at::Tensor x0_BLC = m_C.defined() ? m_C.to(anchor_BLC.scalar_type()).view({1, 1, C}).expand({B, L, C}).clone()
                                       : at::zeros_like(anchor_BLC);
  if (n <= 0) return x0_BLC;
  // Target position j takes source token j / stride (position 1 + j / stride) where j is a multiple of
  // the stride and the row's source has that token; the places between take the empty places' embedding.
  const at::Tensor j_N = at::arange(n, bt.src_len_B.options());
  const at::Tensor q_N = j_N.div(stride, "floor");
  const at::Tensor has_BN1 = (q_N.unsqueeze(0) < bt.src_len_B.unsqueeze(1)).unsqueeze(-1);
  at::Tensor from_BNC = anchor_BLC.narrow(1, 1, n);  // stride 1: source tokens 0 .. n-1
  if (stride > 1) {
    from_BNC = anchor_BLC.index_select(1, (q_N + 1).to(anchor_BLC.device()));
    const at::Tensor token_1N1 = (j_N.remainder(stride) == 0).view({1, n, 1}).to(anchor_BLC.device());
    from_BNC = at::where(token_1N1, from_BNC, blank_C.to(anchor_BLC.scalar_type()).view({1, 1, C}));
  }
  x0_BLC.narrow(1, first, n).copy_(at::where(has_BN1.to(anchor_BLC.device()), from_BNC, x0_BLC.narrow(1, first, n)));
  if (stride > 1 && bt.compact_start_B.defined()) {
    BatchTensors plain = bt;
    plain.compact_start_B = at::Tensor();
    const at::Tensor compact_B11 = bt.compact_start_B.to(anchor_BLC.device()).view({B, 1, 1});
    return at::where(compact_B11, source_aligned_x0(plain, anchor_BLC, m_C, 1), x0_BLC);
  }
  return x0_BLC;
}

}  // namespace mds::model
