// Opens training or validation data given as a prepared directory (memory-mapped) or a jsonl file
// (tokenized in memory: convenient for small sets).
#pragma once

#include <memory>
#include <string>

#include "data/example_source.h"
#include "data/tokenizer.h"

namespace mds::data {

// A prepared directory must have been made with this tokenizer (same fingerprint).
std::unique_ptr<ExampleSource> open_examples(const std::string& path, const Tokenizer& tokenizer);

}  // namespace mds::data
