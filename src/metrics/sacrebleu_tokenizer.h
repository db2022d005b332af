// sacreBLEU's default "13a" tokenizer (mteval-v13a.pl), as sacreBLEU 2.6.0 applies it for BLEU.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mds::metrics {

// BLEU's preprocessing of one segment: str.rstrip(), then Tokenizer13a, then str.split():
//   drop "<skipped>", join "-\n", "\n" -> " ", decode &quot; &amp; &lt; &gt; (in that order);
//   pad every ASCII symbol except ' , . - with spaces; split "." and "," off unless a digit
//   precedes, then again unless a digit follows; split "-" off after a digit (ASCII digits only).
std::vector<std::string> tokenize_13a(std::string_view segment);

}  // namespace mds::metrics
