#include "metrics/sacrebleu_tokenizer.h"

#include "metrics/text.h"

namespace mds::metrics {

namespace {

// Python's str.replace: every non-overlapping occurrence, left to right.
std::u32string replace_all(const std::u32string& s, std::u32string_view from,
                           std::u32string_view to) {
  std::u32string out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t hit = s.find(from, pos);
    if (hit == std::u32string::npos) break;
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::u32string::npos);
  return out;
}

bool is_digit(char32_t c) { return c >= U'0' && c <= U'9'; }  // re's [0-9]

// r'([\{-\~\[-\` -\&\(-\+\:-\@\/])': ASCII symbols but ' , - . (and the space, which is harmless).
bool is_padded_symbol(char32_t c) {
  return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
         (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == 0x2F;
}

bool is_period_or_comma(char32_t c) { return c == U'.' || c == U','; }

}  // namespace

std::vector<std::string> tokenize_13a(std::string_view segment) {
  const std::u32string decoded = utf8_to_u32(segment);
  std::u32string line(python_rstrip(decoded));
  line = replace_all(line, U"<skipped>", U"");
  line = replace_all(line, U"-\n", U"");
  line = replace_all(line, U"\n", U" ");
  if (line.find(U'&') != std::u32string::npos) {
    line = replace_all(line, U"&quot;", U"\"");
    line = replace_all(line, U"&amp;", U"&");
    line = replace_all(line, U"&lt;", U"<");
    line = replace_all(line, U"&gt;", U">");
  }
  line = U" " + line + U" ";

  // Each re.sub scans left to right and resumes after a match, as below.
  std::u32string a;
  for (char32_t c : line) {
    if (is_padded_symbol(c)) {
      a.push_back(U' ');
      a.push_back(c);
      a.push_back(U' ');
    } else {
      a.push_back(c);
    }
  }
  std::u32string b;  // r'([^0-9])([\.,])' -> r'\1 \2 '
  for (std::size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && !is_digit(a[i]) && is_period_or_comma(a[i + 1])) {
      b.push_back(a[i]);
      b.push_back(U' ');
      b.push_back(a[i + 1]);
      b.push_back(U' ');
      i += 2;
    } else {
      b.push_back(a[i++]);
    }
  }
  std::u32string c;  // r'([\.,])([^0-9])' -> r' \1 \2'
  for (std::size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && is_period_or_comma(b[i]) && !is_digit(b[i + 1])) {
      c.push_back(U' ');
      c.push_back(b[i]);
      c.push_back(U' ');
      c.push_back(b[i + 1]);
      i += 2;
    } else {
      c.push_back(b[i++]);
    }
  }
  std::u32string d;  // r'([0-9])(-)' -> r'\1 \2 '
  for (std::size_t i = 0; i < c.size();) {
    if (i + 1 < c.size() && is_digit(c[i]) && c[i + 1] == U'-') {
      d.push_back(c[i]);
      d.push_back(U' ');
      d.push_back(U'-');
      d.push_back(U' ');
      i += 2;
    } else {
      d.push_back(c[i++]);
    }
  }
  std::vector<std::string> tokens;
  for (const std::u32string& t : python_split(std::u32string_view(d)))
    tokens.push_back(u32_to_utf8(t));
  return tokens;
}

}  // namespace mds::metrics
