#include "runtime/runtime.h"

#include <ATen/Parallel.h>

#include "core/error.h"
#include "runtime/device.h"
#include "runtime/host_memory.h"

namespace mds::runtime {

std::string Runtime::describe() const { return str_cat(device, " in ", to_string(precision)); }

Runtime resolve_runtime(const Config& c) {
  keep_freed_host_memory();
  Runtime r;
  set_threads(static_cast<int>(c.get_int("train.threads")));
  r.threads = at::get_num_threads();
  r.device = resolve_device(c.get_string("train.device"));
  r.precision = resolve_precision(c, "train.precision", r.device);
  return r;
}

}  // namespace mds::runtime
