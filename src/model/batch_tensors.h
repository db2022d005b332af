// A packed Batch (data/batcher.h, plain vectors) as tensors on a device.
//   ids_BL          int64 token ids
//   trg_mask_BL     bool, target region
//   key_mask_BL     bool, may be attended to (false on source padding)
//   global_mask_BL  bool, global tokens
//   trg_rows_N, key_rows_N  int64, the flat indices (b * L + l) of the target / attended positions
//   compact_start_B bool, rows that start from their source packed at the first places (undefined: none)
//   facts           what attention needs to know of the masks (MaskFacts)
// Everything that depends on the masks' values is computed here from the host's copy, so that no
// step has to read a mask back from the device (nonzero() and max() there wait for it).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "data/batcher.h"
#include "model/mask_facts.h"

namespace mds::model {

struct BatchTensors {
  at::Tensor ids_BL, trg_mask_BL, key_mask_BL, global_mask_BL;
  at::Tensor src_len_B, trg_len_B;  // int64
  at::Tensor trg_rows_N, key_rows_N;  // int64 (undefined = found from the masks where needed)
  at::Tensor compact_start_B;         // bool (undefined = no row)
  MaskFacts facts;                    // (-1 = unknown: found from the masks)
  int64_t src_region = 0, trg_region = 0;
};

BatchTensors to_tensors(const data::Batch& batch, c10::Device device);

// Generation with predicted lengths: row b keeps the first keep_B[b] positions of its target region
// (its tokens and the EOS); the rest becomes padding (PAD ids, masked out of attention, not generated,
// not global), and the batch is cut to its longest kept row. keep_B: int64 [B], values in [1, T].
BatchTensors limit_target_region(const BatchTensors& batch, const at::Tensor& keep_B);

// The source put where the target goes: target position j holds the embedding of source token j
// (anchor position 1 + j) where the row's source has one, m (or 0 without it) elsewhere. [B, L, C].
// On a canvas (data.target_canvas = "source", stride = data.canvas_slots + 1) position j holds source
// token j / stride where j is a multiple of the stride, and `blank_C` (PAD's embedding) between them;
// a row of batch.compact_start_B starts as with stride 1 (a rewrite, data.canvas_rewrite_compact).
// Sampling starts from it with sample.start_time < 1; training noises it with train.source_start_prob.
at::Tensor source_aligned_x0(const BatchTensors& batch, const at::Tensor& anchor_BLC, const at::Tensor& m_C,
                             int64_t stride = 1, const at::Tensor& blank_C = at::Tensor());

}  // namespace mds::model
