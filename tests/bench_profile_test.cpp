// The profile's sums (train_step_bench --profile): device time from a Kineto trace, by kernel and by
// the op that launched it, and the op classes of its tables.
#include <gtest/gtest.h>

#include "bench/kernel_profile.h"
#include "bench/op_profile.h"

namespace {

using mds::bench::kernel_profile_from_trace;

// A trace as Kineto writes it: CPU ops and their runtime calls on the host, kernels, copies and
// fills on the device, linked by "External id"; times in microseconds.
nlohmann::json small_trace() {
  return nlohmann::json::parse(R"json({"traceEvents": [
    {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 100, "dur": 30, "args": {"External id": 7}},
    {"ph": "X", "cat": "cpu_op", "name": "aten::add_", "ts": 140, "dur": 10, "args": {"External id": 8, "Input Dims": [[4, 8], [8]], "Input type": ["c10::BFloat16", "float"]}},
    {"ph": "X", "cat": "cpu_op", "name": "aten::unlinked", "ts": 150, "dur": 1, "args": {}},
    {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 105, "dur": 5, "args": {"External id": 7, "correlation": 1}},
    {"ph": "X", "cat": "kernel", "name": "gemm_a", "ts": 1000, "dur": 40, "args": {"External id": 7, "correlation": 1}},
    {"ph": "X", "cat": "kernel", "name": "gemm_a", "ts": 1050, "dur": 20.5, "args": {"External id": 7}},
    {"ph": "X", "cat": "kernel", "name": "add_kernel", "ts": 1080, "dur": 4, "args": {"External id": 8}},
    {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy HtoD (Pinned -> Device)", "ts": 990, "dur": 2, "args": {}},
    {"ph": "X", "cat": "gpu_memset", "name": "Memset (Device)", "ts": 1090, "dur": 1, "args": {"External id": 99}},
    {"ph": "f", "cat": "ac2g", "name": "flow", "ts": 105}
  ]})json");
}

TEST(KernelProfile, SumsTheDeviceEventsByKernelAndByTheOpThatLaunchedThem) {
  const auto p = kernel_profile_from_trace(small_trace());
  ASSERT_TRUE(p.ok()) << p.error;
  ASSERT_EQ(p.kernels.size(), 4u);
  EXPECT_EQ(p.kernels[0].name, "gemm_a");  // the most time first
  EXPECT_EQ(p.kernels[0].calls, 2);
  EXPECT_EQ(p.kernels[0].op, "aten::mm");
  EXPECT_EQ(p.kernels.back().op, "(no op)");  // the fill, 1 us: the least time
  EXPECT_EQ(p.kernels[0].inputs, "");  // recorded without shapes
  EXPECT_EQ(p.kernels[1].name, "add_kernel");
  EXPECT_EQ(p.kernels[1].inputs, R"([[4,8],[8]] ["c10::BFloat16","float"])");
  EXPECT_NEAR(p.kernels[0].seconds, 60.5e-6, 1e-12);
  EXPECT_NEAR(p.busy_seconds, (40 + 20.5 + 4 + 2 + 1) * 1e-6, 1e-12);
  EXPECT_NEAR(p.span_seconds, (1091 - 990) * 1e-6, 1e-12);  // first start to last end
  EXPECT_NEAR(p.by_op.at("aten::mm"), 60.5e-6, 1e-12);
  EXPECT_NEAR(p.by_op.at("aten::add_"), 4e-6, 1e-12);
  // A copy with no op, and a fill whose op is not in the trace (not the op that has no id either).
  EXPECT_NEAR(p.by_op.at("(no op)"), 3e-6, 1e-12);
  EXPECT_EQ(p.by_op.size(), 3u);
}

TEST(KernelProfile, ATraceWithoutKernelsSaysSo) {
  auto trace = small_trace();
  nlohmann::json host_only = nlohmann::json::array();
  for (const auto& e : trace["traceEvents"])
    if (e["cat"] == "cpu_op") host_only.push_back(e);
  const auto p = kernel_profile_from_trace({{"traceEvents", host_only}});
  EXPECT_FALSE(p.ok());
  EXPECT_NE(p.error.find("no kernels"), std::string::npos);
  EXPECT_FALSE(kernel_profile_from_trace(nlohmann::json::object()).ok());
}

TEST(OpClass, NamesTheKindOfWork) {
  using mds::bench::op_class;
  EXPECT_EQ(op_class("aten::mm"), "matmul");
  EXPECT_EQ(op_class("aten::_grouped_mm"), "matmul");
  EXPECT_EQ(op_class("aten::_local_scalar_dense"), "reads back");
  EXPECT_EQ(op_class("aten::_flash_attention_backward"), "attention");
  EXPECT_EQ(op_class("aten::_fused_adamw_"), "optimizer");
  EXPECT_EQ(op_class("autograd::engine::evaluate_function: AddBackward0"), "autograd");
  EXPECT_EQ(op_class("aten::copy_"), "copy, cast");
  EXPECT_EQ(op_class("aten::index_select"), "indexing");
  EXPECT_EQ(op_class("aten::view"), "views (host only)");
  EXPECT_EQ(op_class("aten::empty_strided"), "allocation, fill");
  EXPECT_EQ(op_class("aten::gelu"), "elementwise, reduction");
}

}  // namespace
