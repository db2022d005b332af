// Device time as the GPU measured it (train_step_bench --profile on CUDA): LibTorch's Kineto profiler
// records every kernel, copy and fill the device ran (through CUPTI), with its duration and the ATen
// op that launched it. Unlike CUDA events around each op (op_profile.h), these durations hold no time
// the GPU spent waiting for the host, so they add up to the device's busy time, and the step's time
// less that is the time it sat idle.
//
// The profiler writes a Chrome trace, which is read back here: its layout (events with "cat" kernel,
// gpu_memcpy, gpu_memset and cpu_op, linked by "External id") is the same in LibTorch 1.13 and 2.x,
// where the C++ event classes are not.
#pragma once

#include <torch/csrc/autograd/profiler_kineto.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace mds::bench {

struct KernelStat {
  std::string name;
  int64_t calls = 0;
  double seconds = 0.0;
  std::string op;      // the op that launched most of its time
  std::string inputs;  // that op's input sizes and dtypes where recorded: [[4,8],[8]] ["c10::BFloat16","float"]
};

struct KernelProfile {
  std::vector<KernelStat> kernels;     // by kernel name, the most time first
  std::map<std::string, double> by_op;  // device seconds by the innermost op that launched them
  double busy_seconds = 0.0;            // the sum of every kernel, copy and fill
  double span_seconds = 0.0;            // the first one's start to the last one's end
  std::string error;                    // why there is nothing (no CUPTI, an unreadable trace)
  bool ok() const { return error.empty() && !kernels.empty(); }
};

// Sums a Kineto Chrome trace: the device's events by name and by the op whose "External id" they carry.
inline KernelProfile kernel_profile_from_trace(const nlohmann::json& trace) {
  KernelProfile p;
  const auto events = trace.find("traceEvents");
  if (events == trace.end() || !events->is_array()) {
    p.error = "the trace has no traceEvents";
    return p;
  }
  const auto external_id = [](const nlohmann::json& e) -> int64_t {
    const auto args = e.find("args");
    if (args == e.end() || !args->is_object()) return -1;
    const auto id = args->find("External id");
    return id != args->end() && id->is_number() ? id->get<int64_t>() : -1;
  };
  std::map<int64_t, std::string> op_of, inputs_of;  // External id -> op name, its inputs
  for (const auto& e : *events) {
    if (e.value("cat", "") != "cpu_op" || external_id(e) < 0) continue;
    op_of[external_id(e)] = e.value("name", "");
    const auto& args = e["args"];
    if (args.contains("Input Dims"))
      inputs_of[external_id(e)] = args["Input Dims"].dump() + (args.contains("Input type") ? " " + args["Input type"].dump() : "");
  }
  std::map<std::string, KernelStat> kernels;
  std::map<std::string, std::map<std::pair<std::string, std::string>, double>> ops_of;  // kernel -> (op, inputs) -> seconds
  double first = 0.0, last = 0.0;
  bool any = false;
  for (const auto& e : *events) {
    const std::string cat = e.value("cat", "");
    if (cat != "kernel" && cat != "gpu_memcpy" && cat != "gpu_memset") continue;
    const double ts = e.value("ts", 0.0) * 1e-6, dur = e.value("dur", 0.0) * 1e-6;
    KernelStat& k = kernels[e.value("name", "?")];
    k.name = e.value("name", "?");
    k.calls += 1;
    k.seconds += dur;
    p.busy_seconds += dur;
    const auto op = op_of.find(external_id(e));
    const std::string& op_name = op != op_of.end() ? op->second : "(no op)";
    p.by_op[op_name] += dur;
    const auto inputs = inputs_of.find(external_id(e));
    ops_of[k.name][{op_name, inputs != inputs_of.end() ? inputs->second : ""}] += dur;
    first = any ? std::min(first, ts) : ts;
    last = any ? std::max(last, ts + dur) : ts + dur;
    any = true;
  }
  p.span_seconds = last - first;
  for (auto& [name, k] : kernels) {
    const auto& ops = ops_of[name];
    const auto top = std::max_element(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    k.op = top->first.first;
    k.inputs = top->first.second;
    p.kernels.push_back(std::move(k));
  }
  std::sort(p.kernels.begin(), p.kernels.end(), [](const KernelStat& a, const KernelStat& b) { return a.seconds > b.seconds; });
  if (p.kernels.empty()) p.error = "the trace holds no kernels (is CUPTI there?)";
  return p;
}

// Runs `run` under Kineto with CPU and CUDA activities and sums what the device ran. `run` must end with
// the device synchronised. The trace is kept at `keep_trace_at` when given; otherwise it goes to a
// temporary file, removed once read.
inline KernelProfile record_kernels(const std::function<void()>& run, const std::string& keep_trace_at = "") {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  const bool keep_trace = !keep_trace_at.empty();
  const std::string trace_path =
      keep_trace ? keep_trace_at : "/tmp/mds_kernel_profile_" + std::to_string(::getpid()) + ".json";
  KernelProfile p;
  try {
    const ProfilerConfig config(ProfilerState::KINETO, /*report_input_shapes=*/true);
    const std::set<ActivityType> activities{ActivityType::CPU, ActivityType::CUDA};
    prof::prepareProfiler(config, activities);
    prof::enableProfiler(config, activities);
    run();
    prof::disableProfiler()->save(trace_path);
  } catch (const std::exception& e) {
    p.error = std::string("the profiler failed: ") + e.what();
    return p;
  }
  try {
    std::ifstream in(trace_path);
    p = kernel_profile_from_trace(nlohmann::json::parse(in));
  } catch (const std::exception& e) {
    p.error = "cannot read the trace " + trace_path + ": " + e.what();
  }
  if (!keep_trace) ::unlink(trace_path.c_str());
  return p;
}

}  // namespace mds::bench
