// CUDA graphs for a call repeated at fixed shapes (the sampler's model call, once per solver step):
// replaying a captured graph issues the call's hundreds of kernels in one launch, so a small batch
// is no longer bound by the host issuing them. In a CPU build, or on tensors of the CPU, both classes
// do nothing but call through.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <vector>

namespace mds::runtime {

// Runs the work of its scope on a stream of its own when `device` is a GPU (graphs cannot be
// captured on the default stream): that stream first waits for the caller's, and the caller's waits
// for it at the end, so tensors cross the boundary in order. Scopes do not nest across threads.
class SideStreamScope {
 public:
  explicit SideStreamScope(const c10::Device& device);
  ~SideStreamScope();
  SideStreamScope(const SideStreamScope&) = delete;
  SideStreamScope& operator=(const SideStreamScope&) = delete;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Calls `fn` as a CUDA graph. A call whose inputs (defined or not, sizes, dtypes, device) are those
// of the call before it, both on a GPU and on a stream other than the default one, captures `fn`
// once on copies of them and replays it; each later call with that signature copies its inputs into
// the captured ones and replays. Other calls run `fn` as issued (the first call always does: it
// initialises what capture cannot, cuBLAS workspaces and the like). `fn` must be a pure function of
// its inputs, issue no host synchronisation and copy nothing from the host (its host code runs at
// capture only). The result is a copy: the next replay overwrites the captured output. A capture
// that fails is logged once and turns graphs off for the process; the call then runs as issued.
class GraphedCall {
 public:
  using Fn = std::function<at::Tensor(const std::vector<at::Tensor>&)>;
  GraphedCall(Fn fn, bool enabled);
  ~GraphedCall();
  GraphedCall(const GraphedCall&) = delete;
  GraphedCall& operator=(const GraphedCall&) = delete;

  at::Tensor operator()(const std::vector<at::Tensor>& inputs);
  // How many calls replayed the graph (tests and benchmarks).
  int64_t replays() const { return replays_; }

 private:
  struct Graph;
  Fn fn_;
  bool enabled_;
  std::vector<std::vector<int64_t>> last_signature_;
  std::unique_ptr<Graph> graph_;
  int64_t replays_ = 0;
};

// False once a capture has failed in this process (then no GraphedCall tries again).
bool cuda_graphs_usable();

}  // namespace mds::runtime
