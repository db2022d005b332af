// What the benchmark programs share: timing around device synchronisation,
// CUDA memory statistics, recognising out-of-memory errors, machine facts and writing JSON.
//
// Everything CUDA-specific is behind MDS_WITH_CUDA (set by CMake for -DMDS_CUDA=ON builds), so a
// CPU build compiles the same programs; torch::cuda::is_available()/synchronize() are in every build.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Device.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>
#include <torch/version.h>

#ifdef MDS_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"

namespace mds::bench {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Waits for the device's queued work (no-op on CPU): call before starting and before reading a clock.
inline void sync(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

inline double median(std::vector<double> xs) {
  if (xs.empty()) return 0.0;
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  return n % 2 == 1 ? xs[n / 2] : 0.5 * (xs[n / 2 - 1] + xs[n / 2]);
}

inline double mean(const std::vector<double>& xs) {
  double sum = 0.0;
  for (const double x : xs) sum += x;
  return xs.empty() ? 0.0 : sum / static_cast<double>(xs.size());
}

// "1.95 2.01": factors with two decimals, "(n/a)" for none.
inline std::string join_fixed(const std::vector<double>& xs) {
  std::string s;
  char text[32];
  for (const double x : xs) {
    std::snprintf(text, sizeof text, "%s%.2f", s.empty() ? "" : " ", x);
    s += text;
  }
  return s.empty() ? "(n/a)" : s;
}

// printf("%.*f") into a string; "-" for a negative value (not measured).
inline std::string fixed(double x, int digits = 2) {
  if (x < 0) return "-";
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, x);
  return text;
}

// The first line of an exception's message, without LibTorch's backtrace.
inline std::string first_line(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string message = c10_error ? c10_error->what_without_backtrace() : e.what();
  return message.substr(0, message.find('\n'));
}

// A benchmark's main(): `body` (its real main), with an error reported as "NAME: first line" and exit 1.
template <typename Body>
int guarded_main(const char* name, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, first_line(e).c_str());
    return 1;
  }
}

// CUDA's caching allocator throws c10::OutOfMemoryError; cuBLAS / cuDNN workspaces that fail to
// allocate surface as other errors that say so.
inline bool is_oom(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) return true;
  const std::string m = first_line(e);
  for (const char* sign : {"out of memory", "OUT_OF_MEMORY", "ALLOC_FAILED", "not enough memory",
                           "can't allocate memory"})
    if (m.find(sign) != std::string::npos) return true;
  return false;
}

// ---------------------------------------------------------------------------- CUDA memory

// Frees the caching allocator's unused blocks (after an out-of-memory error, between sizes).
inline void empty_cache(const c10::Device& device) {
#ifdef MDS_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)device;
#endif
}

inline void reset_peak_memory(const c10::Device& device) {
#ifdef MDS_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(c10::cuda::current_device());
#else
  (void)device;
#endif
}

// Bytes held by tensors on the GPU (peak since the last reset_peak_memory, or now), in MiB; -1 on CPU
// or without CUDA support in the build. Index 0 of the stat arrays is StatType::AGGREGATE (all pools).
inline double cuda_allocated_mib(const c10::Device& device, bool peak) {
#ifdef MDS_WITH_CUDA
  if (!device.is_cuda()) return -1.0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::cuda::current_device());
  const auto& aggregate = stats.allocated_bytes[0];
  return static_cast<double>(peak ? aggregate.peak : aggregate.current) / (1 << 20);
#else
  (void)device, (void)peak;
  return -1.0;
#endif
}

// ---------------------------------------------------------------------------- machine

inline std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

// The machine a result belongs to. scripts/gpu/bench.sh exports MDS_BENCH_COMMIT (git rev-parse HEAD
// or the COMMIT file) and MDS_BENCH_GPU (nvidia-smi's name).
inline nlohmann::json machine_json(const c10::Device& device) {
  nlohmann::json m = {{"cpu", cpu_model()},
                      {"nproc", sysconf(_SC_NPROCESSORS_ONLN)},
                      {"libtorch", torch_version()},
                      {"device", device.str()},
                      {"commit", env_or("MDS_BENCH_COMMIT", "unknown")},
                      {"cuda_build", false}};
#ifdef MDS_WITH_CUDA
  m["cuda_build"] = true;
  if (device.is_cuda()) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, c10::cuda::current_device()) == cudaSuccess) {
      m["gpu"] = std::string(prop.name);
      m["gpu_memory_gib"] = static_cast<double>(prop.totalGlobalMem) / (1ull << 30);
      m["gpu_sm_count"] = prop.multiProcessorCount;
    }
    int runtime = 0;
    if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) m["cuda_runtime"] = runtime;
  }
#endif
  const std::string smi = env_or("MDS_BENCH_GPU", "");
  if (!smi.empty()) m["gpu_nvidia_smi"] = smi;
  return m;
}

// The GPU's name (or the CPU's) for the tables' headers.
inline std::string device_name(const c10::Device& device) {
  const nlohmann::json m = machine_json(device);
  if (m.contains("gpu")) return m["gpu"].get<std::string>();
  return device.is_cuda() ? std::string("cuda") : "CPU (" + m["cpu"].get<std::string>() + ")";
}

inline void write_json(const std::string& path, const nlohmann::json& report) {
  if (path.empty()) return;
  const std::string dir = fs::parent_path(path);
  if (!dir.empty()) fs::create_directories(dir);
  std::ofstream out(path);
  MDS_CHECK(out.good(), "cannot write ", path);
  out << report.dump(2) << '\n';
  MDS_CHECK(out.good(), "cannot write ", path);
  std::printf("\nwrote %s\n", fs::absolute(path).c_str());
}

// A measured value, or null in JSON for one not measured (negative).
inline nlohmann::json number_or_null(double x) { return x < 0 ? nlohmann::json(nullptr) : nlohmann::json(x); }

inline std::string pass_fail(bool measured, bool pass) { return !measured ? "-" : pass ? "PASS" : "FAIL"; }

}  // namespace mds::bench
