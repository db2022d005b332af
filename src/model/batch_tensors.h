// A packed Batch (data/batcher.h, plain vectors) as tensors on a device.
//   ids_BL          int64 token ids
//   trg_mask_BL     bool, target region
//   key_mask_BL     bool, may be attended to (false on source padding)
//   global_mask_BL  bool, global tokens
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "data/batcher.h"

namespace mds::model {

struct BatchTensors {
  at::Tensor ids_BL, trg_mask_BL, key_mask_BL, global_mask_BL;
  at::Tensor src_len_B, trg_len_B;  // int64
  int64_t src_region = 0, trg_region = 0;
};

BatchTensors to_tensors(const data::Batch& batch, c10::Device device);

}  // namespace mds::model
