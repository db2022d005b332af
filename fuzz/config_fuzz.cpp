// The configuration on any text: a TOML file, then `--set` overrides (the input's lines after a line
// "--set", one assignment a line), validated and printed back. Errors are mds::Error naming the key.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find("\n--set\n");
  const std::string toml = input.substr(0, split);
  std::vector<std::string> overrides;
  if (split != std::string::npos) {
    std::size_t at = split + 7;
    while (at <= input.size()) {
      const std::size_t end = input.find('\n', at);
      overrides.push_back(input.substr(at, end == std::string::npos ? std::string::npos : end - at));
      if (end == std::string::npos) break;
      at = end + 1;
    }
  }
  try {
    mds::Config c;
    c.merge_toml(toml, "fuzz.toml");
    for (const std::string& o : overrides) c.set(o);
    c.validate();
    // What is written must read back as the same configuration.
    const std::string text = c.to_toml();
    mds::Config again;
    again.merge_toml(text, "round-trip");
    if (again.to_toml() != text) __builtin_trap();
  } catch (const mds::Error&) {
  }
  return 0;
}
