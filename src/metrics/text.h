// Text helpers that reproduce Python's behaviour, which the reference metric implementations rely
// on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mds::metrics {

// Decodes UTF-8 into code points (invalid bytes become U+FFFD) and back.
std::u32string utf8_to_u32(std::string_view s);
std::string u32_to_utf8(std::u32string_view s);

// Python's str.isspace() for one code point: the separators str.split() uses (ASCII whitespace,
// \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000; not
// U+200B).
bool is_python_space(char32_t c);

// Python's str.split() with no argument: runs of whitespace separate, no empty tokens.
std::vector<std::string> python_split(std::string_view s);
std::vector<std::u32string> python_split(std::u32string_view s);

// len(s.split(' ')): DiffuSeq's length, where only U+0020 separates and "" counts as 1.
std::size_t python_split_space_count(std::string_view s);

// Python's str.rstrip() with no argument (the whitespace of is_python_space).
std::u32string_view python_rstrip(std::u32string_view s);

// Python's str.isalnum() for one code point (Unicode 14.0.0, as Python 3.11).
bool is_python_alnum(char32_t c);

// Python's str.lower(): full lowercase mapping (U+0130 becomes "i\u0307") and the Final_Sigma
// rule for U+03A3 (Unicode 14.0.0, as Python 3.11).
std::u32string python_lower(std::u32string_view s);

}  // namespace mds::metrics
