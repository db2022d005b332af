// runtime::GraphedCall and SideStreamScope: on the CPU they call through; on a GPU the calls after
// the first replay one captured graph and give what the calls as issued give. The GPU tests skip
// without a GPU.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <vector>

#include "runtime/cuda_graph.h"

namespace mds {
namespace {

using runtime::GraphedCall;
using runtime::SideStreamScope;

// y = relu(x W + t) with W fixed: what a model call is to the sampler, in small.
struct Affine {
  torch::Tensor w;
  int calls = 0;  // how often the host code ran (once more per capture, never per replay)
  torch::Tensor operator()(const std::vector<torch::Tensor>& xs) {
    ++calls;
    return torch::relu(torch::matmul(xs[0], w) + xs[1].unsqueeze(-1));
  }
};

TEST(GraphedCall, OnTheCpuCallsThrough) {
  torch::manual_seed(1);
  Affine f{torch::randn({8, 8})};
  GraphedCall call([&](const std::vector<torch::Tensor>& xs) { return f(xs); }, /*enabled=*/true);
  for (int i = 0; i < 4; ++i) {
    const torch::Tensor x = torch::randn({3, 8}), t = torch::randn({3});
    EXPECT_TRUE(torch::equal(call({x, t}), torch::relu(torch::matmul(x, f.w) + t.unsqueeze(-1))));
  }
  EXPECT_EQ(f.calls, 4);
  EXPECT_EQ(call.replays(), 0);
}

TEST(GraphedCallGpu, ReplaysAfterTheFirstCallAndMatchesTheCallsAsIssued) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  torch::manual_seed(2);
  Affine f{torch::randn({64, 32}).to(cuda)};
  SideStreamScope side(cuda);
  GraphedCall call([&](const std::vector<torch::Tensor>& xs) { return f(xs); }, /*enabled=*/true);
  std::vector<torch::Tensor> outs, wants;
  for (int i = 0; i < 6; ++i) {
    const torch::Tensor x = torch::randn({16, 64}).to(cuda), t = torch::randn({16}).to(cuda);
    outs.push_back(call({x, t}));
    wants.push_back(torch::relu(torch::matmul(x, f.w) + t.unsqueeze(-1)));
  }
  // The first call as issued, the second captured (its host code runs once more), then replays.
  EXPECT_EQ(f.calls, 2);
  EXPECT_EQ(call.replays(), 5);
  for (int i = 0; i < 6; ++i) EXPECT_LT((outs[i] - wants[i]).abs().max().item<double>(), 1e-5) << "call " << i;
  // Each result is a copy: a replay does not overwrite the earlier ones.
  EXPECT_FALSE(torch::equal(outs[4], outs[5]));
  // Another shape is run as issued (the graph holds the first shape only).
  const torch::Tensor x = torch::randn({5, 64}).to(cuda), t = torch::randn({5}).to(cuda);
  EXPECT_LT((call({x, t}) - torch::relu(torch::matmul(x, f.w) + t.unsqueeze(-1))).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(call.replays(), 5);
  EXPECT_TRUE(runtime::cuda_graphs_usable());
}

TEST(GraphedCallGpu, NeverCapturesOnTheDefaultStreamOrWhenOff) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  Affine f{torch::randn({8, 8}).to(cuda)};
  GraphedCall on_default([&](const std::vector<torch::Tensor>& xs) { return f(xs); }, true);
  for (int i = 0; i < 3; ++i) on_default({torch::randn({2, 8}).to(cuda), torch::randn({2}).to(cuda)});
  EXPECT_EQ(on_default.replays(), 0);
  SideStreamScope side(cuda);
  GraphedCall off([&](const std::vector<torch::Tensor>& xs) { return f(xs); }, false);
  for (int i = 0; i < 3; ++i) off({torch::randn({2, 8}).to(cuda), torch::randn({2}).to(cuda)});
  EXPECT_EQ(off.replays(), 0);
  EXPECT_EQ(f.calls, 6);
}

}  // namespace
}  // namespace mds
