// The prepared-data reader on any directory content: the input holds meta.json, index.bin, tokens.bin
// and ids.txt one after another, each ended by the 4 bytes "\n#|\n" (a missing part is an empty file).
// Opening either throws mds::Error naming the file or gives a dataset whose every example can be read
// (in bounds: AddressSanitizer watches).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "data/prepared.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static const char* const kParts[] = {"meta.json", "index.bin", "tokens.bin", "ids.txt"};
  static const char kSeparator[] = "\n#|\n";
  const uint8_t* at = data;
  const uint8_t* end = data + size;
  for (const char* part : kParts) {
    const uint8_t* stop = at;
    while (stop < end && !(end - stop >= 4 && std::memcmp(stop, kSeparator, 4) == 0)) ++stop;
    mds::fuzz::write_scratch(part, at, static_cast<std::size_t>(stop - at));
    at = stop < end ? stop + 4 : end;
  }
  try {
    mds::data::PreparedDataset dataset(mds::fuzz::scratch_dir());
    uint64_t sum = 0;
    for (std::size_t i = 0; i < dataset.size(); ++i) {
      for (const auto span : {dataset.src(i), dataset.trg(i)})
        for (const int32_t token : span) sum += static_cast<uint32_t>(token);
      sum += dataset.id(i).size();
    }
    if (sum == 1) std::abort();  // keeps the reads
  } catch (const mds::Error&) {
  }
  return 0;
}
