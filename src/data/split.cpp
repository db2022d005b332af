#include "data/split.h"

#include <random>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "data/jsonl.h"

namespace mds::data {

namespace {

// A uniform integer in [0, n) from the engine's raw output (rejection sampling, the same on every
// standard library, unlike std::uniform_int_distribution).
uint64_t uniform_below(std::mt19937_64& engine, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = engine(); while (x >= limit);
  return x % n;
}

}  // namespace

SplitStats split_examples(const std::string& input, const SplitOptions& options, const std::string& train_out,
                          const std::string& holdout_out) {
  MDS_CHECK(options.holdout > 0, "data split: --holdout must be at least 1");
  MDS_CHECK(fs::absolute(train_out) != fs::absolute(holdout_out), "data split: the two outputs are the same file ",
            train_out);
  // Both outputs' directories now, not after the input was read twice and one output written.
  for (const std::string* out : {&train_out, &holdout_out}) {
    const std::string dir = fs::parent_path(*out);
    MDS_CHECK(dir.empty() || fs::is_directory(dir), "data split: cannot write ", *out, ": the directory ", dir,
              " does not exist");
  }
  // First pass: every line checked, the examples counted.
  SplitStats stats;
  std::size_t total = 0;
  {
    JsonlReader reader(input);
    Example e;
    while (reader.next(e)) ++total;
    const JsonlStats& s = reader.stats();
    stats.skipped = s.blank + s.empty_src + s.empty_trg;
  }
  MDS_CHECK(options.holdout < total, input, ": --holdout ", options.holdout, " leaves no training example (the file has ",
            total, ")");
  // Which examples are held out, by their index among the examples.
  std::vector<bool> held(total, false);
  if (!options.seed) {
    for (std::size_t i = total - options.holdout; i < total; ++i) held[i] = true;
  } else {
    // Floyd's algorithm: `holdout` distinct indices, each subset equally likely.
    std::mt19937_64 engine(*options.seed);
    for (std::size_t j = total - options.holdout; j < total; ++j) {
      const std::size_t t = static_cast<std::size_t>(uniform_below(engine, j + 1));
      held[held[t] ? j : t] = true;
    }
  }
  // Second pass: the lines as they are, in their order.
  std::string train_text, holdout_text;
  JsonlReader reader(input);
  Example e;
  for (std::size_t i = 0; reader.next(e); ++i) {
    MDS_CHECK(i < total, input, " changed while it was read");
    std::string& to = held[i] ? holdout_text : train_text;
    to += reader.line();
    to += '\n';
    ++(held[i] ? stats.holdout : stats.train);
  }
  MDS_CHECK(stats.train + stats.holdout == total, input, " changed while it was read");
  fs::write_file_atomic(train_out, train_text);
  fs::write_file_atomic(holdout_out, holdout_text);
  return stats;
}

}  // namespace mds::data
