#include "metrics/text.h"

#include <algorithm>

#include "metrics/unicode_tables.h"

namespace mds::metrics {

std::u32string utf8_to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    std::size_t len = c < 0x80           ? 1
                      : (c >> 5) == 0x6  ? 2
                      : (c >> 4) == 0xE  ? 3
                      : (c >> 3) == 0x1E ? 4
                                         : 0;
    if (len == 0 || i + len > n) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = true;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string u32_to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::vector<std::string> python_split(std::string_view s) {
  std::vector<std::string> out;
  std::u32string current;
  for (char32_t c : utf8_to_u32(s)) {
    if (is_python_space(c)) {
      if (!current.empty()) out.push_back(u32_to_utf8(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) out.push_back(u32_to_utf8(current));
  return out;
}

std::vector<std::u32string> python_split(std::u32string_view s) {
  std::vector<std::u32string> out;
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    while (i < n && is_python_space(s[i])) ++i;
    if (i == n) break;
    const std::size_t start = i;
    while (i < n && !is_python_space(s[i])) ++i;
    out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

std::size_t python_split_space_count(std::string_view s) {
  std::size_t count = 1;
  for (char c : s) count += c == ' ';
  return count;
}

std::u32string_view python_rstrip(std::u32string_view s) {
  std::size_t n = s.size();
  while (n > 0 && is_python_space(s[n - 1])) --n;
  return s.substr(0, n);
}

namespace {

bool in_ranges(const unicode::CodeRange* ranges, std::size_t size, char32_t c) {
  const unicode::CodeRange* end = ranges + size;
  const unicode::CodeRange* it = std::upper_bound(
      ranges, end, c, [](char32_t v, const unicode::CodeRange& r) { return v < r.first; });
  return it != ranges && c <= (it - 1)->last;
}

char32_t simple_lower(char32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
  const unicode::CodeMap* end = unicode::kLower + unicode::kLowerSize;
  const unicode::CodeMap* it = std::lower_bound(
      unicode::kLower, end, c, [](const unicode::CodeMap& m, char32_t v) { return m.from < v; });
  return it != end && it->from == c ? it->to : c;
}

bool is_cased(char32_t c) { return in_ranges(unicode::kCased, unicode::kCasedSize, c); }

bool is_case_ignorable(char32_t c) {
  return in_ranges(unicode::kCaseIgnorable, unicode::kCaseIgnorableSize, c);
}

// CPython's handle_capital_sigma: final when a cased letter precedes (skipping case-ignorables)
// and none follows.
bool is_final_sigma(std::u32string_view s, std::size_t i) {
  std::size_t j = i;
  while (j > 0 && is_case_ignorable(s[j - 1])) --j;
  if (j == 0 || !is_cased(s[j - 1])) return false;
  j = i + 1;
  while (j < s.size() && is_case_ignorable(s[j])) ++j;
  return j == s.size() || !is_cased(s[j]);
}

}  // namespace

bool is_python_alnum(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return in_ranges(unicode::kAlnum, unicode::kAlnumSize, c);
}

std::u32string python_lower(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x130) {
      out.push_back(U'i');
      out.push_back(0x307);
    } else if (c == 0x3A3) {
      out.push_back(is_final_sigma(s, i) ? 0x3C2 : 0x3C3);
    } else {
      out.push_back(simple_lower(c));
    }
  }
  return out;
}

}  // namespace mds::metrics
