// The jsonl reader on any bytes: every input either reads or throws mds::Error (which names the
// file and line); never a crash, a hang or undefined behaviour.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "data/jsonl.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string path = mds::fuzz::write_scratch("input.jsonl", data, size);
  for (const bool require_trg : {true, false}) {
    try {
      mds::data::JsonlOptions options;
      options.require_trg = require_trg;
      mds::data::JsonlReader reader(path, options);
      mds::data::Example example;
      while (reader.next(example)) {
      }
      (void)reader.summary();
    } catch (const mds::Error&) {
    }
  }
  return 0;
}
