// What attention needs to know of a batch's masks before it runs (the number of global slots, whether
// any key is padding, whether any row is padding only): from the host's copy of the batch where there is one (BatchTensors), else read
// from the device masks (mask_facts() in attention.h, one sync).
#pragma once

#include <cstdint>

namespace mds::model {

struct MaskFacts {
  int64_t max_globals = -1;  // the most global tokens in a row; -1 = unknown
  int key_padding = -1;      // 1 when some key is padding; -1 = unknown
  int empty_rows = -1;       // 1 when some row has no key at all (padding only); -1 = unknown
};

}  // namespace mds::model
