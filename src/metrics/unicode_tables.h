// Unicode properties behind Python's str.lower() and str.isalnum(), as tables generated from
// Python 3.11 (Unicode 14.0.0) by unicode_tables.py; the lookups are in text.cpp.
#pragma once

#include <cstddef>

namespace mds::metrics::unicode {

struct CodeMap {
  char32_t from, to;
};
struct CodeRange {
  char32_t first, last;  // inclusive
};

// Single-character lowercase mappings that change the character, sorted (U+0130 lowers to two
// characters and is not in it).
extern const CodeMap kLower[];
extern const std::size_t kLowerSize;
// Sorted, disjoint ranges.
extern const CodeRange kAlnum[];  // str.isalnum()
extern const std::size_t kAlnumSize;
extern const CodeRange kCased[];  // Unicode "Cased"
extern const std::size_t kCasedSize;
extern const CodeRange kCaseIgnorable[];  // Unicode "Case_Ignorable"
extern const std::size_t kCaseIgnorableSize;

}  // namespace mds::metrics::unicode
