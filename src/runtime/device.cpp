#include "runtime/device.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <c10/core/DeviceType.h>
#include <torch/cuda.h>

#ifdef MDS_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <dlfcn.h>

#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/torch_compat.h"
#include "runtime/distributed.h"

namespace mds::runtime {

bool cuda_available() { return torch::cuda::is_available(); }

int cuda_device_count() { return static_cast<int>(torch::cuda::device_count()); }

c10::Device resolve_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name == "auto") return cuda_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    MDS_CHECK(at::hasCUDA(), "device \"", name, "\" asked for, but this build of LibTorch has no CUDA");
    MDS_CHECK(cuda_available(), "device \"", name, "\" asked for, but no GPU is visible");
    return c10::Device(name);
  }
  fail("unknown device \"", name, "\": use auto, cpu, cuda or cuda:N");
}

void make_current(const c10::Device& device) {
#ifdef MDS_WITH_CUDA
  if (device.is_cuda() && device.has_index()) c10::cuda::set_device(device.index());
#else
  (void)device;
#endif
}

void set_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  // OpenBLAS (Debian's LibTorch computes its matmuls there) keeps its own thread pool, sized by the
  // environment at load time and deaf to at::set_num_threads: left alone, its idle threads spin in
  // sched_yield through a fifth of a small model's CPU step. Present in this process only when
  // LibTorch links it, so looked up rather than linked.
  using SetThreads = void (*)(int);
  if (auto* openblas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) openblas(threads);
}

void seed_everything(uint64_t seed) {
  at::manual_seed(seed);
}

std::string runtime_description(bool with_build_config) {
  std::ostringstream os;
  os << "LibTorch " << TORCH_VERSION << " (built against " << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR
     << ")\n";
  os << "CUDA in this build: " << (at::hasCUDA() ? "yes" : "no") << "\n";
  os << "GPUs visible: " << cuda_device_count() << "\n";
  os << "CPU threads: " << at::get_num_threads() << " of " << std::thread::hardware_concurrency() << " cores\n";
  os << "data-parallel backends: " << available_backends() << "\n";
  if (with_build_config) os << "\n" << at::show_config();
  return os.str();
}

}  // namespace mds::runtime
