// Host time per operator (train_step_bench --profile): while an OpProfile is recording, every ATen op
// and autograd node that the dispatcher runs, on any thread (the backward pass runs on the autograd
// engine's device threads), is counted under its name with its self time on the host: its own time
// less that of the ops it called. On a GPU that is the cost of issuing the op (the launch and
// everything around it), which is what bounds a step whose kernels are shorter than their launches.
// Built on at::RecordFunction's global callbacks (LibTorch 1.13 and 2.x alike).
#pragma once

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace mds::bench {

struct OpStat {
  std::string name;
  int64_t calls = 0;
  double self_seconds = 0.0;
};

class OpProfile {
 public:
  OpProfile() = default;
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;
  ~OpProfile() { stop(); }

  void start() {
    stop();
    state().clear();
    handle_ = at::addGlobalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                        .needsInputs(false)
                                        .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
    recording_ = true;
  }
  void stop() {
    if (!recording_) return;
    at::removeCallback(handle_);
    recording_ = false;
  }

  // Every op seen, the largest self time first.
  std::vector<OpStat> table() const {
    std::vector<OpStat> out;
    {
      std::lock_guard<std::mutex> lock(state().mutex);
      for (const auto& [name, s] : state().stats) out.push_back({name, s.first, s.second});
    }
    std::sort(out.begin(), out.end(), [](const OpStat& a, const OpStat& b) { return a.self_seconds > b.self_seconds; });
    return out;
  }

 private:
  using Clock = std::chrono::steady_clock;

  struct Frame {
    Clock::time_point begin;
    double children = 0.0;  // seconds inside ops this one called
  };
  struct State {
    std::mutex mutex;
    std::map<std::string, std::pair<int64_t, double>> stats;  // name -> calls, self seconds
    void clear() {
      std::lock_guard<std::mutex> lock(mutex);
      stats.clear();
    }
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

  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction&) {
    open().push_back({Clock::now(), 0.0});
    return nullptr;
  }
  static void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
    auto& frames = open();
    if (frames.empty()) return;  // began before the profile did
    const Frame f = frames.back();
    frames.pop_back();
    const double total = std::chrono::duration<double>(Clock::now() - f.begin).count();
    if (!frames.empty()) frames.back().children += total;
    std::lock_guard<std::mutex> lock(state().mutex);
    auto& s = state().stats[fn.name()];
    s.first += 1;
    s.second += total - f.children;
  }

  at::CallbackHandle handle_ = 0;
  bool recording_ = false;
};

}  // namespace mds::bench
