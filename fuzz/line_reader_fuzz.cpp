// The line reader on any bytes, plain, gzip or zstd (chosen by the magic bytes, as for users' files):
// it reads lines or throws mds::Error; a damaged or cut compressed stream is an error, not a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "data/line_reader.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string path = mds::fuzz::write_scratch("input", data, size);
  try {
    mds::data::LineReader reader(path);
    std::string line;
    std::size_t bytes = 0;
    // A bomb (a tiny stream that inflates to gigabytes) is read, not refused: stop at 64 MiB here.
    while (reader.next(line) && bytes < (std::size_t{64} << 20)) bytes += line.size() + 1;
  } catch (const mds::Error&) {
  }
  return 0;
}
