// Time per operator (train_step_bench --profile): while an OpProfile is recording, every ATen op and
// autograd node that the dispatcher runs, on any thread (the backward pass runs on the autograd
// engine's device threads), is counted under its name with its self time (its own time less that of
// the ops it called):
//  - on the host: what issuing the op costs (the launch and everything around it), which bounds a
//    step whose kernels are shorter than their launches;
//  - on the GPU (CUDA builds, `device_times`): the stream time between two CUDA events recorded as the
//    op begins and ends. That is the op's kernels where the launch queue is full (a step bound by the
//    device); where the GPU waits on the host it also counts the wait.
// Built on at::RecordFunction's global callbacks (LibTorch 1.13 and 2.x alike).
#pragma once

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#ifdef MDS_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <cuda_runtime_api.h>
#endif

namespace mds::bench {

struct OpStat {
  std::string name;
  int64_t calls = 0;
  double self_seconds = 0.0;         // host
  double device_self_seconds = 0.0;  // GPU stream time; 0 without device times
};

// The class of an op by its name, for a table short enough to read: where the time of a step goes by
// kind of work. "reads back" are the ops that wait for the device (a host sync).
inline std::string op_class(const std::string& name) {
  const auto starts = [&](const char* p) { return name.rfind(p, 0) == 0; };
  const auto has = [&](const char* p) { return name.find(p) != std::string::npos; };
  const auto is = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (name == std::string("aten::") + n) return true;
    return false;
  };
  if (starts("autograd::engine") || has("Backward") || has("AccumulateGrad") || name == "detach") return "autograd";
  if (is({"item", "_local_scalar_dense", "is_nonzero", "nonzero", "equal"})) return "reads back";
  if (is({"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_grouped_mm", "_scaled_mm"})) return "matmul";
  if (has("attention") || has("flash") || has("_efficient_attention")) return "attention";
  if (has("_foreach_") || has("_fused_adam")) return "optimizer";
  if (has("layer_norm") || has("rms_norm")) return "layer norm";
  if (has("softmax") || has("nll_loss") || has("cross_entropy")) return "softmax, loss";
  if (is({"bernoulli_", "normal_", "uniform_", "rand", "randn", "randint", "random_", "dropout", "native_dropout",
          "randperm", "multinomial"}))
    return "random";
  if (is({"copy_", "_to_copy", "to", "clone", "contiguous", "cat", "stack", "_copy_from"})) return "copy, cast";
  if (has("index") || has("embedding") || has("gather") || has("scatter") || has("masked_") || is({"where"}))
    return "indexing";
  if (is({"as_strided", "select", "view", "reshape", "_reshape_alias", "transpose", "t", "expand", "expand_as",
          "unsqueeze", "squeeze", "narrow", "slice", "split", "chunk", "detach", "_unsafe_view", "permute",
          "resolve_conj", "resolve_neg", "alias", "lift_fresh", "unbind", "flatten", "view_as", "unflatten",
          "result_type"}))
    return "views (host only)";
  if (starts("aten::empty") || starts("aten::zeros") || starts("aten::ones") || starts("aten::new_") ||
      starts("aten::full") || is({"scalar_tensor", "resize_", "arange", "fill_", "zero_", "tensor"}))
    return "allocation, fill";
  return "elementwise, reduction";
}

// The ops summed by op_class(), the largest host time first.
inline std::vector<OpStat> by_class(const std::vector<OpStat>& ops) {
  std::map<std::string, OpStat> classes;
  for (const OpStat& op : ops) {
    OpStat& c = classes[op_class(op.name)];
    c.name = op_class(op.name);
    c.calls += op.calls;
    c.self_seconds += op.self_seconds;
    c.device_self_seconds += op.device_self_seconds;
  }
  std::vector<OpStat> out;
  for (auto& [name, c] : classes) out.push_back(c);
  std::sort(out.begin(), out.end(), [](const OpStat& a, const OpStat& b) { return a.self_seconds > b.self_seconds; });
  return out;
}

class OpProfile {
 public:
  OpProfile() = default;
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;
  ~OpProfile() { stop(); }

  // `device_times`: also time every op on the current CUDA stream (ignored without CUDA).
  void start(bool device_times = false) {
    stop();
    state().clear();
    open().clear();
#ifdef MDS_WITH_CUDA
    state().device_times = device_times;
#else
    (void)device_times;
#endif
    handle_ = at::addGlobalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                        .needsInputs(false)
                                        .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
    recording_ = true;
  }
  // Call after the device has finished the ops (their events are read in table()).
  void stop() {
    if (!recording_) return;
    at::removeCallback(handle_);
    recording_ = false;
  }

  // Every op seen, the largest host self time first.
  std::vector<OpStat> table() const {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    const std::size_t n = s.records.size();
    std::vector<double> device(n, 0.0), device_children(n, 0.0);
#ifdef MDS_WITH_CUDA
    for (std::size_t i = 0; i < n; ++i) {
      const Record& r = s.records[i];
      if (r.begin && r.end) device[i] = 1e-3 * static_cast<double>(r.begin->elapsed_time(*r.end));
      if (r.parent >= 0) device_children[static_cast<std::size_t>(r.parent)] += device[i];
    }
#endif
    std::map<std::string, OpStat> by_name;
    for (std::size_t i = 0; i < n; ++i) {
      const Record& r = s.records[i];
      if (!r.done) continue;
      OpStat& st = by_name[r.name];
      st.name = r.name;
      st.calls += 1;
      st.self_seconds += r.host_total - r.host_children;
      st.device_self_seconds += device[i] - device_children[i];
    }
    std::vector<OpStat> out;
    for (auto& [name, st] : by_name) out.push_back(std::move(st));
    std::sort(out.begin(), out.end(), [](const OpStat& a, const OpStat& b) { return a.self_seconds > b.self_seconds; });
    return out;
  }

 private:
  using Clock = std::chrono::steady_clock;

  struct Record {
    std::string name;
    int64_t parent = -1;  // the op that called this one, on the same thread
    bool done = false;
    double host_total = 0.0, host_children = 0.0;
#ifdef MDS_WITH_CUDA
    std::unique_ptr<at::cuda::CUDAEvent> begin, end;
#endif
  };
  struct State {
    std::mutex mutex;
    std::vector<Record> records;
    bool device_times = false;
    void clear() {
      std::lock_guard<std::mutex> lock(mutex);
      records.clear();
    }
  };
  struct Frame {
    int64_t record;
    Clock::time_point begin;
  };
  static State& state() {
    static State s;
    return s;
  }
  // The ops open on this thread, innermost last.
  static std::vector<Frame>& open() {
    thread_local std::vector<Frame> frames;
    return frames;
  }

#ifdef MDS_WITH_CUDA
  static std::unique_ptr<at::cuda::CUDAEvent> event_now() {
    auto e = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);  // with timing
    e->record();
    return e;
  }
#endif

  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
    State& s = state();
    auto& frames = open();
    Record r;
    r.name = fn.name();
    r.parent = frames.empty() ? -1 : frames.back().record;
#ifdef MDS_WITH_CUDA
    if (s.device_times) r.begin = event_now();
#endif
    int64_t index = 0;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      index = static_cast<int64_t>(s.records.size());
      s.records.push_back(std::move(r));
    }
    frames.push_back({index, Clock::now()});
    return nullptr;
  }

  static void on_end(const at::RecordFunction&, at::ObserverContext*) {
    auto& frames = open();
    if (frames.empty()) return;  // began before the profile did
    const Frame f = frames.back();
    frames.pop_back();
    const double total = std::chrono::duration<double>(Clock::now() - f.begin).count();
    State& s = state();
#ifdef MDS_WITH_CUDA
    std::unique_ptr<at::cuda::CUDAEvent> end = s.device_times ? event_now() : nullptr;
#endif
    std::lock_guard<std::mutex> lock(s.mutex);
    if (f.record >= static_cast<int64_t>(s.records.size())) return;  // a record of an earlier profile
    Record& r = s.records[static_cast<std::size_t>(f.record)];
    r.host_total = total;
    r.done = true;
#ifdef MDS_WITH_CUDA
    r.end = std::move(end);
#endif
    if (r.parent >= 0) s.records[static_cast<std::size_t>(r.parent)].host_children += total;
  }

  at::CallbackHandle handle_ = 0;
  bool recording_ = false;
};

}  // namespace mds::bench
