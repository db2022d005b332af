// The host allocator's policy for tensor-sized blocks.
#pragma once

namespace mds::runtime {

// glibc's malloc hands blocks over 128 KiB to mmap and returns them on free, and trims the heap after
// each large free, so a CPU training step page-faults every activation in again: a quarter of a small
// model's step, and 3x its tokens/s once kept (bench/README.md, CPU). This keeps blocks below 32 MiB
// in the heap and the freed heap for the next step. Called once by resolve_runtime(); a no-op without
// glibc. MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ set in the environment win.
void keep_freed_host_memory();

}  // namespace mds::runtime
