#include "runtime/cuda_graph.h"

#include <ATen/autocast_mode.h>

#include <atomic>
#include <optional>

#include "core/cast_cache.h"
#include "core/log.h"

#ifdef MDS_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace mds::runtime {
namespace {

std::atomic<bool> g_graphs_usable{true};

bool any_on_gpu(const std::vector<at::Tensor>& inputs) {
  for (const at::Tensor& t : inputs)
    if (t.defined() && t.is_cuda()) return true;
  return false;
}

#ifdef MDS_WITH_CUDA
// What a capture depends on, per input: defined, dtype, device, sizes.
std::vector<std::vector<int64_t>> signature_of(const std::vector<at::Tensor>& inputs) {
  std::vector<std::vector<int64_t>> sig;
  for (const at::Tensor& t : inputs) {
    if (!t.defined()) {
      sig.push_back({0});
      continue;
    }
    std::vector<int64_t> s{1, static_cast<int64_t>(t.scalar_type()), static_cast<int64_t>(t.device().type()),
                           t.device().index()};
    s.insert(s.end(), t.sizes().begin(), t.sizes().end());
    sig.push_back(std::move(s));
  }
  return sig;
}
#endif

}  // namespace

bool cuda_graphs_usable() { return g_graphs_usable.load(); }

// ---------------------------------------------------------------------------- SideStreamScope

#ifdef MDS_WITH_CUDA
struct SideStreamScope::State {
  c10::cuda::CUDAStream caller, side;
  std::optional<c10::cuda::CUDAStreamGuard> guard;
  State(c10::cuda::CUDAStream c, c10::cuda::CUDAStream s) : caller(c), side(s) {}
};

SideStreamScope::SideStreamScope(const c10::Device& device) {
  if (!device.is_cuda()) return;
  const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
  state_ = std::make_unique<State>(c10::cuda::getCurrentCUDAStream(index), c10::cuda::getStreamFromPool(false, index));
  at::cuda::CUDAEvent ready;
  ready.record(state_->caller);
  ready.block(state_->side);
  state_->guard.emplace(state_->side);
}

SideStreamScope::~SideStreamScope() {
  if (!state_) return;
  state_->guard.reset();
  try {
    at::cuda::CUDAEvent done;
    done.record(state_->side);
    done.block(state_->caller);
  } catch (const std::exception& e) {
    log_error("SideStreamScope: ", e.what());
  }
}
#else
struct SideStreamScope::State {};
SideStreamScope::SideStreamScope(const c10::Device&) {}
SideStreamScope::~SideStreamScope() = default;
#endif

// ---------------------------------------------------------------------------- GraphedCall

#ifdef MDS_WITH_CUDA
struct GraphedCall::Graph {
  at::cuda::CUDAGraph graph;
  std::vector<std::vector<int64_t>> signature;
  std::vector<at::Tensor> inputs;
  at::Tensor output;
};
#else
struct GraphedCall::Graph {};
#endif

GraphedCall::GraphedCall(Fn fn, bool enabled) : fn_(std::move(fn)), enabled_(enabled) {}
GraphedCall::~GraphedCall() = default;

at::Tensor GraphedCall::operator()(const std::vector<at::Tensor>& inputs) {
  if (!enabled_ || !g_graphs_usable.load() || !any_on_gpu(inputs)) return fn_(inputs);
#ifdef MDS_WITH_CUDA
  auto sig = signature_of(inputs);
  if (graph_ && graph_->signature == sig) {
    for (std::size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].defined() && !inputs[i].is_same(graph_->inputs[i])) graph_->inputs[i].copy_(inputs[i]);
    graph_->graph.replay();
    ++replays_;
    return graph_->output.clone();
  }
  const bool default_stream = c10::cuda::getCurrentCUDAStream() == c10::cuda::getDefaultCUDAStream();
  if (graph_ || default_stream || sig != last_signature_) {
    last_signature_ = std::move(sig);
    return fn_(inputs);
  }

  auto g = std::make_unique<Graph>();
  g->signature = std::move(sig);
  for (const at::Tensor& t : inputs) g->inputs.push_back(t.defined() ? t.clone() : at::Tensor());
  // Autocast's cache of cast weights would hand the graph tensors that die with the model call's
  // autocast scope, unless a CastCacheScope keeps them for longer than the graph lives (generation).
  const bool cache = at::autocast::is_autocast_cache_enabled();
  if (!core::cast_cache_active()) at::autocast::set_autocast_cache_enabled(false);
  try {
    // Thread-local: other threads (the HTTP server's, a checkpoint writer) may use CUDA meanwhile.
    g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    try {
      g->output = fn_(g->inputs);
    } catch (...) {
      try {
        g->graph.capture_end();
      } catch (...) {
      }
      throw;
    }
    g->graph.capture_end();
  } catch (const std::exception& e) {
    at::autocast::set_autocast_cache_enabled(cache);
    (void)cudaGetLastError();  // the failed capture's error must not surface in a later call
    g_graphs_usable.store(false);
    log_warn("CUDA graph capture failed; running the model call as issued from now on (sample.cuda_graphs = "
             "false avoids the attempt): ", e.what());
    return fn_(inputs);
  }
  at::autocast::set_autocast_cache_enabled(cache);
  graph_ = std::move(g);
  graph_->graph.replay();
  ++replays_;
  return graph_->output.clone();
#else
  return fn_(inputs);
#endif
}

}  // namespace mds::runtime
