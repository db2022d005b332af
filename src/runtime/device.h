// Choosing the compute device and setting up LibTorch's process-wide state (threads, seeds), plus a
// description of the build and the hardware for `moe-diffuseq info` and run logs.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace mds::runtime {

// "auto" -> cuda:0 when a GPU is visible, else cpu; "cpu"; "cuda" (error if none is visible).
c10::Device resolve_device(const std::string& name);
bool cuda_available();
int cuda_device_count();

// A GPU device becomes the process's current one (custom kernels launch there); no-op otherwise.
void make_current(const c10::Device& device);

// 0 = all cores. Sets intra-op threads (inter-op threads stay LibTorch's default).
void set_threads(int threads);
void seed_everything(uint64_t seed);

// Multi-line description: LibTorch version, CUDA build and devices, threads, BLAS.
std::string runtime_description(bool with_build_config = false);

}  // namespace mds::runtime
