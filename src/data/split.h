// `data split`: sets a number of examples of a jsonl file aside (a holdout that picks the checkpoint,
// a test set), reading any compression the readers take and writing plain jsonl. Lines are copied as
// they are (extra fields kept); every line is checked as the trainer would read it, and blank lines
// and examples with an empty src or trg are left out of both outputs, as training skips them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace mds::data {

struct SplitOptions {
  std::size_t holdout = 0;             // examples set aside; must leave at least one
  std::optional<uint64_t> seed;        // none: the last `holdout` examples; else a random choice
};

struct SplitStats {
  std::size_t train = 0, holdout = 0, skipped = 0;  // skipped: blank lines and empty examples
};

SplitStats split_examples(const std::string& input, const SplitOptions& options, const std::string& train_out,
                          const std::string& holdout_out);

}  // namespace mds::data
