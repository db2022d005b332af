// NLTK's PorterStemmer in its default NLTK_EXTENSIONS mode (nltk/stem/porter.py, NLTK 3.8.1), which
// rouge-score uses for use_stemmer=True: the published algorithm plus Martin Porter's later
// extensions, NLTK's irregular forms (sky, dying, news, proceed...), 'ies'/'ied' on four-letter
// words, 'alli' re-run through step 2, and 'fulli' / 'logi' in step 2.
#pragma once

#include <string>

namespace mds::metrics {

// PorterStemmer().stem(word) for a lowercase word (rouge-score passes [a-z0-9]+ tokens); the
// caller lowercases (NLTK's to_lowercase applies Python's str.lower()).
std::string porter_stem(const std::string& word);

}  // namespace mds::metrics
