// The trivial baselines every generator should beat, computed the same way for every data set:
//   most-frequent  the most frequent training target, for every input
//   copy           the source itself
//   first-k        the first k whitespace-separated words of the source; k defaults to the median
//                  target length in words of the training set (a summary's "lead" baseline)
#pragma once

#include <cstddef>
#include <string>

namespace mds::data {

enum class BaselineKind { most_frequent, copy, first_k };

// "most-frequent" | "copy" | "first-k"; anything else is an error naming the choices.
BaselineKind parse_baseline_kind(const std::string& name);

// The most frequent "trg" of a jsonl file (ties: the one seen first). Throws when there is none.
std::string most_frequent_target(const std::string& train_jsonl);
// The median number of whitespace-separated words of the "trg" of a jsonl file (the lower median
// for an even count). Throws when there are no examples.
std::size_t median_target_words(const std::string& train_jsonl);
// The first k whitespace-separated words of `text`, joined by single spaces.
std::string first_words(const std::string& text, std::size_t k);

struct BaselineStats {
  std::size_t predictions = 0;
  std::string description;  // "copy the source", "first 9 source words", "the most frequent target \"...\""
};

// Writes {"id", "src", "prediction", "reference"} for every line of `input` (as `generate` does).
// `train_jsonl` is read by most-frequent, and by first-k when k = 0 (the median target length).
BaselineStats write_baseline_predictions(BaselineKind kind, const std::string& train_jsonl, const std::string& input,
                                         const std::string& output, std::size_t k = 0);

}  // namespace mds::data
