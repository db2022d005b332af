// Device data to the host without waiting for it now. A copy to pageable memory (Tensor::cpu())
// waits for the device to finish everything queued before it; this one is queued into pinned memory
// with an event behind it, and get() waits only for that event, which by the time the value is read
// (a step later) has usually long passed.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <optional>
#include <thread>

namespace mds {

class HostCopy {
 public:
  HostCopy() = default;
  // A CPU tensor is kept as it is; one on a device is copied on the device's current stream.
  explicit HostCopy(const at::Tensor& t) {
    if (!t.defined() || t.is_cpu()) {
      host_ = t;
      return;
    }
    host_ = at::empty(t.sizes(), at::TensorOptions().dtype(t.scalar_type()).pinned_memory(true));
    host_.copy_(t, /*non_blocking=*/true);
    done_.emplace(t.device().type());
    done_->record(c10::impl::VirtualGuardImpl(t.device().type()).getStream(t.device()));
  }

  // The values on the host, once the copy has finished.
  const at::Tensor& get() {
    if (done_) {
      // query() in a loop: 1.13's c10::Event has no synchronize(). The copy is usually done already.
      while (!done_->query()) std::this_thread::yield();
      done_.reset();
    }
    return host_;
  }

 private:
  at::Tensor host_;
  std::optional<c10::Event> done_;
};

}  // namespace mds
