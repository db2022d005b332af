#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "core/error.h"
#include "data/batcher.h"
#include "model/attention.h"
#include "model/batch_tensors.h"
#include "runtime/device.h"

namespace mds {

using data::Batch;
using data::InMemorySource;
using data::PackOptions;
using data::pack_batch;
using model::BatchTensors;
using model::to_tensors;
using runtime::cuda_available;
using runtime::resolve_device;

namespace {

Batch small_batch() {
  InMemorySource source;
  source.add({10, 11, 12}, {30, 31});
  source.add({20}, {40, 41, 42, 43});
  PackOptions pack;
  pack.max_src_len = 8;
  pack.max_trg_len = 4;
  return pack_batch(source, {0, 1}, pack);
}

void expect_matches(const Batch& b, const BatchTensors& t) {
  ASSERT_EQ(t.ids_BL.sizes(), (at::IntArrayRef{b.batch_size, b.length}));
  at::Tensor ids = t.ids_BL.cpu();
  at::Tensor trg = t.trg_mask_BL.cpu(), key = t.key_mask_BL.cpu(), glob = t.global_mask_BL.cpu();
  EXPECT_EQ(ids.scalar_type(), at::kLong);
  EXPECT_EQ(trg.scalar_type(), at::kBool);
  for (int64_t r = 0; r < b.batch_size; ++r)
    for (int64_t c = 0; c < b.length; ++c) {
      const std::size_t k = static_cast<std::size_t>(r * b.length + c);
      EXPECT_EQ(ids[r][c].item<int64_t>(), b.ids[k]);
      EXPECT_EQ(trg[r][c].item<bool>(), b.trg_mask[k] != 0);
      EXPECT_EQ(key[r][c].item<bool>(), b.key_mask[k] != 0);
      EXPECT_EQ(glob[r][c].item<bool>(), b.global_mask[k] != 0);
    }
  EXPECT_EQ(t.src_len_B.cpu()[1].item<int64_t>(), b.src_len[1]);
  EXPECT_EQ(t.trg_len_B.cpu()[1].item<int64_t>(), b.trg_len[1]);
  EXPECT_EQ(t.src_region, b.src_region);
  // What the step would otherwise read back from the device: the mask rows and facts, from the host.
  EXPECT_TRUE(at::equal(t.trg_rows_N.cpu(), trg.reshape({-1}).nonzero().squeeze(1)));
  EXPECT_TRUE(at::equal(t.key_rows_N.cpu(), key.reshape({-1}).nonzero().squeeze(1)));
  const model::MaskFacts facts = model::mask_facts(key, glob);
  EXPECT_EQ(t.facts.max_globals, facts.max_globals);
  EXPECT_EQ(t.facts.key_padding, facts.key_padding);
  EXPECT_EQ(t.facts.key_padding, 1);  // the second row's source is padded
  EXPECT_EQ(t.facts.empty_rows, facts.empty_rows);
  EXPECT_EQ(t.facts.empty_rows, 0);
  // A row of padding only, as the device reads it.
  EXPECT_EQ(model::mask_facts(key.logical_and(at::tensor({1, 0}).to(at::kBool).view({2, 1})), glob).empty_rows, 1);
  // BOS, source, SEP, target and EOS: (1 + 3 + 1 + 2 + 1) + (1 + 1 + 1 + 3 + 1), the second target cut
  // to the region of 4 with its EOS.
  EXPECT_EQ(b.real_tokens(), 15);
}

TEST(BatchTensors, CpuMatchesBatch) {
  Batch b = small_batch();
  expect_matches(b, to_tensors(b, c10::Device(c10::kCPU)));
}

TEST(BatchTensors, CudaMatchesBatch) {
  if (!cuda_available()) GTEST_SKIP() << "no GPU visible: CUDA test skipped";
  Batch b = small_batch();
  BatchTensors t = to_tensors(b, c10::Device(c10::kCUDA, 0));
  EXPECT_TRUE(t.ids_BL.is_cuda());
  expect_matches(b, t);
}

TEST(Device, Resolve) {
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  EXPECT_EQ(resolve_device("auto").is_cuda(), cuda_available());
  EXPECT_THROW(resolve_device("tpu"), Error);
  if (!cuda_available()) {
    EXPECT_THROW(resolve_device("cuda"), Error);
  }
}

}  // namespace
}  // namespace mds
