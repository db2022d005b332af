// A line-by-line port of nltk/stem/porter.py (NLTK_EXTENSIONS); the comments name its methods.
#include "metrics/porter_stemmer.h"

#include <functional>
#include <unordered_map>
#include <vector>

namespace mds::metrics {

namespace {

using Condition = std::function<bool(const std::string&)>;

struct Rule {
  std::string suffix;  // "*d": ends with a double consonant
  std::string replacement;
  Condition condition;  // empty: unconditional
};

bool ends_with(const std::string& w, const std::string& suffix) {
  return w.size() >= suffix.size() &&
         w.compare(w.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string drop(const std::string& w, std::size_t n) { return w.substr(0, w.size() - n); }

// _is_consonant
bool is_consonant(const std::string& w, std::size_t i) {
  const char c = w[i];
  if (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u') return false;
  if (c == 'y') return i == 0 ? true : !is_consonant(w, i - 1);
  return true;
}

// _measure: the number of "vc" in the word's consonant/vowel pattern.
int measure(const std::string& stem) {
  int m = 0;
  bool prev_vowel = false;
  for (std::size_t i = 0; i < stem.size(); ++i) {
    const bool cons = is_consonant(stem, i);
    if (cons && prev_vowel) ++m;
    prev_vowel = !cons;
  }
  return m;
}

bool has_positive_measure(const std::string& stem) { return measure(stem) > 0; }

// _contains_vowel
bool contains_vowel(const std::string& stem) {
  for (std::size_t i = 0; i < stem.size(); ++i) {
    if (!is_consonant(stem, i)) return true;
  }
  return false;
}

// _ends_double_consonant
bool ends_double_consonant(const std::string& w) {
  const std::size_t n = w.size();
  return n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1);
}

// _ends_cvc, with NLTK's two-letter vowel-consonant case
bool ends_cvc(const std::string& w) {
  const std::size_t n = w.size();
  if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) &&
      w[n - 1] != 'w' && w[n - 1] != 'x' && w[n - 1] != 'y') {
    return true;
  }
  return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}

// _apply_rule_list: the first rule whose suffix matches decides, whether or not its condition
// holds.
std::string apply_rules(const std::string& word, const std::vector<Rule>& rules) {
  for (const Rule& rule : rules) {
    if (rule.suffix == "*d" && ends_double_consonant(word)) {
      const std::string stem = drop(word, 2);
      if (!rule.condition || rule.condition(stem)) return stem + rule.replacement;
      return word;
    }
    if (ends_with(word, rule.suffix)) {
      const std::string stem = drop(word, rule.suffix.size());
      if (!rule.condition || rule.condition(stem)) return stem + rule.replacement;
      return word;
    }
  }
  return word;
}

std::string step1a(const std::string& word) {
  if (ends_with(word, "ies") && word.size() == 4) return drop(word, 3) + "ie";
  return apply_rules(word, {{"sses", "ss", {}}, {"ies", "i", {}}, {"ss", "ss", {}}, {"s", "", {}}});
}

std::string step1b(const std::string& word) {
  if (ends_with(word, "ied")) return drop(word, 3) + (word.size() == 4 ? "ie" : "i");
  if (ends_with(word, "eed")) {
    const std::string stem = drop(word, 3);
    return measure(stem) > 0 ? stem + "ee" : word;
  }
  bool succeeded = false;
  std::string intermediate;
  for (const char* suffix : {"ed", "ing"}) {
    if (ends_with(word, suffix)) {
      intermediate = drop(word, std::char_traits<char>::length(suffix));
      if (contains_vowel(intermediate)) {
        succeeded = true;
        break;
      }
    }
  }
  if (!succeeded) return word;
  const char last = intermediate.back();
  return apply_rules(
      intermediate,
      {{"at", "ate", {}},
       {"bl", "ble", {}},
       {"iz", "ize", {}},
       {"*d", std::string(1, last),
        [last](const std::string&) { return last != 'l' && last != 's' && last != 'z'; }},
       {"", "e", [](const std::string& stem) { return measure(stem) == 1 && ends_cvc(stem); }}});
}

std::string step1c(const std::string& word) {
  return apply_rules(word, {{"y", "i", [](const std::string& stem) {
                               return stem.size() > 1 && is_consonant(stem, stem.size() - 1);
                             }}});
}

std::string step2(const std::string& word) {
  if (ends_with(word, "alli") && has_positive_measure(drop(word, 4))) {
    return step2(drop(word, 4) + "al");
  }
  const Condition pos = has_positive_measure;
  return apply_rules(word, {{"ational", "ate", pos},
                            {"tional", "tion", pos},
                            {"enci", "ence", pos},
                            {"anci", "ance", pos},
                            {"izer", "ize", pos},
                            {"bli", "ble", pos},
                            {"alli", "al", pos},
                            {"entli", "ent", pos},
                            {"eli", "e", pos},
                            {"ousli", "ous", pos},
                            {"ization", "ize", pos},
                            {"ation", "ate", pos},
                            {"ator", "ate", pos},
                            {"alism", "al", pos},
                            {"iveness", "ive", pos},
                            {"fulness", "ful", pos},
                            {"ousness", "ous", pos},
                            {"aliti", "al", pos},
                            {"iviti", "ive", pos},
                            {"biliti", "ble", pos},
                            {"fulli", "ful", pos},
                            // the 'l' of 'logi' stays with the stem for the measure
                            {"logi", "log", [&word](const std::string&) {
                               return has_positive_measure(drop(word, 3));
                             }}});
}

std::string step3(const std::string& word) {
  const Condition pos = has_positive_measure;
  return apply_rules(word, {{"icate", "ic", pos},
                            {"ative", "", pos},
                            {"alize", "al", pos},
                            {"iciti", "ic", pos},
                            {"ical", "ic", pos},
                            {"ful", "", pos},
                            {"ness", "", pos}});
}

std::string step4(const std::string& word) {
  const Condition gt1 = [](const std::string& stem) { return measure(stem) > 1; };
  return apply_rules(word, {{"al", "", gt1},
                            {"ance", "", gt1},
                            {"ence", "", gt1},
                            {"er", "", gt1},
                            {"ic", "", gt1},
                            {"able", "", gt1},
                            {"ible", "", gt1},
                            {"ant", "", gt1},
                            {"ement", "", gt1},
                            {"ment", "", gt1},
                            {"ent", "", gt1},
                            {"ion", "",
                             [](const std::string& stem) {
                               return measure(stem) > 1 && !stem.empty() &&
                                      (stem.back() == 's' || stem.back() == 't');
                             }},
                            {"ou", "", gt1},
                            {"ism", "", gt1},
                            {"ate", "", gt1},
                            {"iti", "", gt1},
                            {"ous", "", gt1},
                            {"ive", "", gt1},
                            {"ize", "", gt1}});
}

// Both 'e' rules are tried (not _apply_rule_list).
std::string step5a(const std::string& word) {
  if (ends_with(word, "e")) {
    const std::string stem = drop(word, 1);
    if (measure(stem) > 1) return stem;
    if (measure(stem) == 1 && !ends_cvc(stem)) return stem;
  }
  return word;
}

std::string step5b(const std::string& word) {
  return apply_rules(
      word, {{"ll", "l", [&word](const std::string&) { return measure(drop(word, 1)) > 1; }}});
}

const std::unordered_map<std::string, std::string>& irregular_forms() {
  static const std::unordered_map<std::string, std::string> pool = {
      {"sky", "sky"},        {"skies", "sky"},        {"dying", "die"},
      {"lying", "lie"},      {"tying", "tie"},        {"news", "news"},
      {"innings", "inning"}, {"inning", "inning"},    {"outings", "outing"},
      {"outing", "outing"},  {"cannings", "canning"}, {"canning", "canning"},
      {"howe", "howe"},      {"proceed", "proceed"},  {"exceed", "exceed"},
      {"succeed", "succeed"}};
  return pool;
}

}  // namespace

std::string porter_stem(const std::string& word) {
  const auto& pool = irregular_forms();
  auto it = pool.find(word);
  if (it != pool.end()) return it->second;
  if (word.size() <= 2) return word;
  std::string stem = step1a(word);
  stem = step1b(stem);
  stem = step1c(stem);
  stem = step2(stem);
  stem = step3(stem);
  stem = step4(stem);
  stem = step5a(stem);
  stem = step5b(stem);
  return stem;
}

}  // namespace mds::metrics
