#include "data/baseline.h"

#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "data/jsonl.h"

namespace mds::data {

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

std::size_t write_constant_predictions(const std::string& input, const std::string& prediction,
                                       const std::string& output) {
  JsonlOptions o;
  o.require_trg = false;
  o.skip_empty = false;
  std::string text;
  std::size_t n = 0;
  for (const auto& e : read_jsonl(input, o)) {
    text += "{\"id\": " + json_quote(e.id.empty() ? std::to_string(e.line) : e.id) + ", \"src\": " + json_quote(e.src) +
            ", \"prediction\": " + json_quote(prediction);
    if (!e.trg.empty()) text += ", \"reference\": " + json_quote(e.trg);
    text += "}\n";
    ++n;
  }
  fs::write_file_atomic(output, text);
  return n;
}

}  // namespace mds::data
