#include "data/baseline.h"

#include <algorithm>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "data/jsonl.h"

namespace mds::data {

namespace {

std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

}  // namespace

BaselineKind parse_baseline_kind(const std::string& name) {
  if (name == "most-frequent") return BaselineKind::most_frequent;
  if (name == "copy") return BaselineKind::copy;
  if (name == "first-k") return BaselineKind::first_k;
  fail("unknown baseline \"", name, "\": expected most-frequent, copy or first-k");
}

std::string most_frequent_target(const std::string& train_jsonl) {
  std::unordered_map<std::string, std::size_t> counts;
  std::vector<std::string> order;
  JsonlReader reader(train_jsonl);
  Example ex;
  while (reader.next(ex))
    if (counts[ex.trg]++ == 0) order.push_back(ex.trg);
  MDS_CHECK(!order.empty(), train_jsonl, ": no examples");
  std::string best = order.front();
  for (const auto& t : order)
    if (counts[t] > counts[best]) best = t;
  return best;
}

std::size_t median_target_words(const std::string& train_jsonl) {
  std::vector<std::size_t> lengths;
  JsonlReader reader(train_jsonl);
  Example ex;
  while (reader.next(ex)) lengths.push_back(words_of(ex.trg).size());
  MDS_CHECK(!lengths.empty(), train_jsonl, ": no examples");
  const std::size_t mid = (lengths.size() - 1) / 2;
  std::nth_element(lengths.begin(), lengths.begin() + static_cast<std::ptrdiff_t>(mid), lengths.end());
  return lengths[mid];
}

std::string first_words(const std::string& text, std::size_t k) {
  std::string out;
  std::size_t n = 0;
  for (const std::string& w : words_of(text)) {
    if (n++ == k) break;
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

BaselineStats write_baseline_predictions(BaselineKind kind, const std::string& train_jsonl, const std::string& input,
                                         const std::string& output, std::size_t k) {
  BaselineStats stats;
  std::string constant;
  if (kind == BaselineKind::most_frequent) {
    constant = most_frequent_target(train_jsonl);
    stats.description = "the most frequent target \"" + constant + "\"";
  } else if (kind == BaselineKind::copy) {
    stats.description = "copy the source";
  } else {
    if (k == 0) k = std::max<std::size_t>(1, median_target_words(train_jsonl));
    stats.description = "first " + std::to_string(k) + " source words";
  }
  JsonlOptions o;
  o.require_trg = false;
  o.skip_empty = false;
  std::string text;
  for (const auto& e : read_jsonl(input, o)) {
    const std::string prediction =
        kind == BaselineKind::most_frequent ? constant : kind == BaselineKind::copy ? e.src : first_words(e.src, k);
    text += "{\"id\": " + json_quote(e.id.empty() ? std::to_string(e.line) : e.id) + ", \"src\": " + json_quote(e.src) +
            ", \"prediction\": " + json_quote(prediction);
    if (!e.trg.empty()) text += ", \"reference\": " + json_quote(e.trg);
    text += "}\n";
    ++stats.predictions;
  }
  fs::write_file_atomic(output, text);
  return stats;
}

}  // namespace mds::data
