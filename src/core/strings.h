// Small string utilities: trimming, splitting, UTF-8 validation, edit distance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mds {

std::string_view trim(std::string_view s);  // ASCII whitespace only
std::vector<std::string> split(std::string_view s, char sep);
bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);
std::string to_lower_ascii(std::string_view s);

// Returns the byte offset of the first invalid UTF-8 sequence, or npos when `s` is valid UTF-8
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
std::size_t find_invalid_utf8(std::string_view s);

// Levenshtein distance, for "did you mean" suggestions.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`, or "" when none is close enough to be a plausible typo.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

// "1.5 GiB", "12.0 MiB" ...
std::string human_bytes(double bytes);

}  // namespace mds
