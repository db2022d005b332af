// Host data to a device without waiting for it. A blocking copy (Tensor::to's default) synchronises the
// stream, so the host stops issuing work until the device has caught up; a non-blocking one from
// pageable memory may too. Through pinned memory the copy is queued and the call returns; LibTorch's
// pinned-memory cache keeps the block until the copy is done.
#pragma once

#include <ATen/ATen.h>

namespace mds {

// `host` (a CPU tensor, its memory possibly borrowed: it is copied before the call returns) as `dtype`
// on `device`. A tensor already on a device is copied the usual way.
inline at::Tensor to_device_async(const at::Tensor& host, c10::Device device, at::ScalarType dtype) {
  if (device.is_cpu() || !host.is_cpu()) return host.to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
  at::Tensor pinned = at::empty(host.sizes(), at::TensorOptions().dtype(dtype).pinned_memory(true));
  pinned.copy_(host);
  return pinned.to(device, /*non_blocking=*/true);
}

inline at::Tensor to_device_async(const at::Tensor& host, c10::Device device) {
  return to_device_async(host, device, host.scalar_type());
}

}  // namespace mds
