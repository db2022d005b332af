// The trivial baseline every generator should beat: predict the most frequent training target for
// every input.
#pragma once

#include <string>

namespace mds::data {

// The most frequent "trg" of a jsonl file (ties: the one seen first). Throws when there is none.
std::string most_frequent_target(const std::string& train_jsonl);

// Writes {"id", "src", "prediction", "reference"} for every line of `input`, with `prediction`
// the same text for all. Returns the number of lines written.
std::size_t write_constant_predictions(const std::string& input, const std::string& prediction,
                                       const std::string& output);

}  // namespace mds::data
