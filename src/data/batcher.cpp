#include "data/batcher.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>

#include "core/config.h"
#include "core/error.h"
#include "data/source_canvas.h"
#include "data/special_tokens.h"

namespace mds::data {

Truncation parse_truncation(const std::string& name) {
  if (name == "end") return Truncation::end;
  if (name == "start") return Truncation::start;
  if (name == "middle") return Truncation::middle;
  fail("unknown truncation \"", name, "\": expected one of end, start, middle");
}

TargetPadding parse_target_padding(const std::string& name) {
  if (name == "max") return TargetPadding::max;
  if (name == "batch") return TargetPadding::batch;
  fail("unknown target padding \"", name, "\": expected one of max, batch");
}

GlobalTokens parse_global_tokens(const std::string& name) {
  if (name == "none") return GlobalTokens::none;
  if (name == "bos+sep") return GlobalTokens::bos_sep;
  if (name == "bos+sep+target") return GlobalTokens::bos_sep_target;
  fail("unknown global tokens \"", name, "\": expected one of none, bos+sep, bos+sep+target");
}

namespace {

void check_pack_options(const PackOptions& o) {
  MDS_CHECK(o.max_src_len >= 0, "data.max_src_len must be >= 0, got ", o.max_src_len);
  // The target region holds at least the EOS.
  MDS_CHECK(o.max_trg_len >= 1, "data.max_trg_len must be >= 1, got ", o.max_trg_len);
}

}  // namespace

int64_t longest_row(const PackOptions& o) {
  return static_cast<int64_t>(o.max_src_len) + static_cast<int64_t>(o.max_trg_len) + 2;
}

void check_batch_budget(std::size_t batch_tokens, const PackOptions& pack, const std::string& where) {
  const int64_t longest = longest_row(pack);
  MDS_CHECK(static_cast<int64_t>(batch_tokens) >= longest, where, "data.batch_tokens = ", batch_tokens,
            " cannot hold one sequence of the longest shape (data.max_src_len + data.max_trg_len + 2 = ",
            longest, "): set data.batch_tokens to at least ", longest);
}

PackOptions pack_options_from_config(const Config& c) {
  PackOptions p;
  p.max_src_len = static_cast<int>(c.get_int("data.max_src_len"));
  p.max_trg_len = static_cast<int>(c.get_int("data.max_trg_len"));
  p.truncation = parse_truncation(c.get_string("data.truncation"));
  p.trg_pad = parse_target_padding(c.get_string("data.trg_pad"));
  p.globals = parse_global_tokens(c.get_string("attention.globals"));
  p.mask_target_padding = c.get_string("data.target_length") == "predict";
  p.source_canvas = c.get_string("data.target_canvas") == "source";
  p.canvas_slots = static_cast<int>(c.get_int("data.canvas_slots"));
  if (p.source_canvas) {
    const int64_t need = canvas_length(p.max_src_len, p.canvas_slots) + 1;
    MDS_CHECK(p.max_trg_len >= need, c.origin("data.max_trg_len"), ": data.target_canvas = \"source\" lays the target out on ",
              "its source, (data.canvas_slots + 1) places a source token: data.max_trg_len must hold ", need,
              " (data.max_src_len = ", p.max_src_len, ", data.canvas_slots = ", p.canvas_slots, ", and the EOS), not ",
              p.max_trg_len);
  }
  return p;
}

BatchPlanOptions batch_plan_options_from_config(const Config& c, bool shuffle) {
  BatchPlanOptions b;
  b.batch_tokens = static_cast<std::size_t>(c.get_int("data.batch_tokens"));
  check_batch_budget(b.batch_tokens, pack_options_from_config(c), c.origin("data.batch_tokens") + ": ");
  b.max_batch_size = static_cast<std::size_t>(c.get_int("data.max_batch_size"));
  b.bucket_window = static_cast<std::size_t>(c.get_int("data.bucket_window"));
  b.shuffle = shuffle && c.get_bool("data.shuffle");
  b.seed = static_cast<uint64_t>(c.get_int("train.seed"));
  return b;
}

namespace {

// Target region length for a batch whose longest packed target is `max_trg`.
int64_t target_region(int64_t max_trg, const PackOptions& o) {
  return o.trg_pad == TargetPadding::max ? o.max_trg_len : max_trg + 1;
}

// splitmix64: spreads (seed, epoch) over the state, so nearby seeds give unrelated orders.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, n), by rejection: unlike std::uniform_int_distribution the result is the same
// with every standard library, so a plan is reproducible across builds.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % n;
  uint64_t r;
  do r = rng(); while (r >= limit);
  return r % n;
}

template <typename T>
void shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (std::size_t i = v.size(); i > 1; --i) {
    std::size_t j = static_cast<std::size_t>(uniform_below(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace

namespace {

// The s tokens of `src` that a row keeps, written to `out`.
void copy_kept_source(const TokenSpan& src, int64_t s, Truncation truncation, int32_t* out) {
  const int64_t n_src = static_cast<int64_t>(src.size);
  if (n_src <= s || truncation == Truncation::end) {
    std::copy(src.data, src.data + s, out);
  } else if (truncation == Truncation::start) {
    std::copy(src.data + (n_src - s), src.data + n_src, out);
  } else {  // middle: keep both ends, the head gets the odd token
    const int64_t head = (s + 1) / 2, tail = s / 2;
    std::copy(src.data, src.data + head, out);
    std::copy(src.data + (n_src - tail), src.data + n_src, out + head);
  }
}

}  // namespace

std::vector<int32_t> kept_source(const TokenSpan& src, const PackOptions& options) {
  std::vector<int32_t> out(static_cast<std::size_t>(packed_src_len(src.size, options)));
  copy_kept_source(src, static_cast<int64_t>(out.size()), options.truncation, out.data());
  return out;
}

int64_t packed_src_len(std::size_t src_len, const PackOptions& options) {
  return std::min<int64_t>(static_cast<int64_t>(src_len), options.max_src_len);
}

int64_t packed_trg_len(std::size_t trg_len, const PackOptions& options) {
  return std::min<int64_t>(static_cast<int64_t>(trg_len), options.max_trg_len - 1);
}

Batch pack_batch(const ExampleSource& source, const std::vector<std::size_t>& examples,
                 const PackOptions& options) {
  check_pack_options(options);
  Batch b;
  b.batch_size = static_cast<int64_t>(examples.size());
  b.src_len.reserve(examples.size());
  b.trg_len.reserve(examples.size());
  int64_t max_src = 0, max_trg = 0;
  for (std::size_t e : examples) {
    MDS_CHECK(e < source.size(), "example ", e, " out of range: the data has ", source.size());
    int64_t s = packed_src_len(source.src(e).size, options);
    int64_t t = packed_trg_len(source.trg(e).size, options);
    b.src_len.push_back(static_cast<int32_t>(s));
    b.trg_len.push_back(static_cast<int32_t>(t));
    max_src = std::max(max_src, s);
    max_trg = std::max(max_trg, t);
  }
  const int64_t S = max_src, T = target_region(max_trg, options), L = S + T + 2;
  b.src_region = S;
  b.trg_region = T;
  b.length = L;
  b.example = examples;
  for (std::size_t r = 0; r < examples.size(); ++r) {
    if (!source.compact_start(examples[r])) continue;
    if (b.compact_start.empty()) b.compact_start.assign(examples.size(), 0);
    b.compact_start[r] = 1;
  }

  const std::size_t n = static_cast<std::size_t>(b.batch_size * L);
  b.ids.assign(n, SpecialTokens::pad);
  b.trg_mask.assign(n, 0);
  b.key_mask.assign(n, 1);
  b.global_mask.assign(n, 0);

  for (int64_t r = 0; r < b.batch_size; ++r) {
    int32_t* ids = b.ids.data() + r * L;
    uint8_t* trg_mask = b.trg_mask.data() + r * L;
    uint8_t* key_mask = b.key_mask.data() + r * L;
    uint8_t* global_mask = b.global_mask.data() + r * L;
    const TokenSpan src = source.src(examples[r]);
    const TokenSpan trg = source.trg(examples[r]);
    const int64_t s = b.src_len[r], t = b.trg_len[r];

    ids[0] = SpecialTokens::bos;
    copy_kept_source(src, s, options.truncation, ids + 1);
    for (int64_t p = 1 + s; p <= S; ++p) key_mask[p] = 0;  // source padding
    ids[S + 1] = SpecialTokens::sep;

    std::copy(trg.data, trg.data + t, ids + S + 2);
    ids[S + 2 + t] = SpecialTokens::eos;
    for (int64_t p = S + 2; p < L; ++p) trg_mask[p] = 1;

    if (options.globals != GlobalTokens::none) {
      global_mask[0] = 1;
      global_mask[S + 1] = 1;
      if (options.globals == GlobalTokens::bos_sep_target)
        for (int64_t p = S + 2; p < L; ++p) global_mask[p] = 1;
    }
    if (options.mask_target_padding)
      for (int64_t p = S + 3 + t; p < L; ++p) trg_mask[p] = key_mask[p] = global_mask[p] = 0;
  }
  return b;
}

std::vector<std::vector<std::size_t>> plan_batches(const ExampleSource& source,
                                                   const PackOptions& pack,
                                                   const BatchPlanOptions& plan, uint64_t epoch) {
  check_pack_options(pack);
  MDS_CHECK(plan.world_size >= 1, "world_size must be >= 1, got ", plan.world_size);
  MDS_CHECK(plan.rank >= 0 && plan.rank < plan.world_size, "rank ", plan.rank,
            " out of range for world_size ", plan.world_size);
  check_batch_budget(plan.batch_tokens, pack);

  const std::size_t n = source.size();
  std::vector<int32_t> src_len(n), trg_len(n);
  double total_len = 0;
  for (std::size_t i = 0; i < n; ++i) {
    src_len[i] = static_cast<int32_t>(packed_src_len(source.src(i).size, pack));
    trg_len[i] = static_cast<int32_t>(packed_trg_len(source.trg(i).size, pack));
    total_len += static_cast<double>(src_len[i] + target_region(trg_len[i], pack) + 2);
  }

  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::mt19937_64 rng(splitmix64(plan.seed ^ splitmix64(epoch)));
  if (plan.shuffle) shuffle(order, rng);

  // Windows of about bucket_window batches: sorting inside them makes batches of similar
  // lengths (little padding) while keeping the order random at a larger scale.
  std::size_t window = n;
  if (plan.bucket_window > 0 && n > 0) {
    const double avg_len = total_len / static_cast<double>(n);
    std::size_t per_batch =
        std::max<std::size_t>(1, static_cast<std::size_t>(plan.batch_tokens / avg_len));
    if (plan.max_batch_size > 0) per_batch = std::min(per_batch, plan.max_batch_size);
    window = std::max<std::size_t>(1, plan.bucket_window * per_batch);
  }

  std::vector<std::vector<std::size_t>> batches;
  for (std::size_t begin = 0; begin < n; begin += window) {
    const std::size_t end = std::min(n, begin + window);
    if (plan.bucket_window > 0)
      std::stable_sort(order.begin() + begin, order.begin() + end,
                       [&](std::size_t a, std::size_t b) {
                         if (src_len[a] != src_len[b]) return src_len[a] < src_len[b];
                         return trg_len[a] < trg_len[b];
                       });
    // Greedy cut: grow the batch while B * L (as pack_batch would compute L) fits the budget.
    std::vector<std::size_t> current;
    int64_t max_src = 0, max_trg = 0;
    for (std::size_t k = begin; k < end; ++k) {
      const std::size_t e = order[k];
      const int64_t s = std::max<int64_t>(max_src, src_len[e]);
      const int64_t t = std::max<int64_t>(max_trg, trg_len[e]);
      const int64_t L = s + target_region(t, pack) + 2;
      const std::size_t B = current.size() + 1;
      const bool fits = B * static_cast<std::size_t>(L) <= plan.batch_tokens &&
                        (plan.max_batch_size == 0 || B <= plan.max_batch_size);
      if (fits) {
        current.push_back(e);
        max_src = s;
        max_trg = t;
      } else {
        batches.push_back(std::move(current));
        current = {e};
        max_src = src_len[e];
        max_trg = trg_len[e];
      }
    }
    if (!current.empty()) batches.push_back(std::move(current));
  }

  if (plan.shuffle) shuffle(batches, rng);

  // Every rank takes the same number of batches, so that collective steps stay in lockstep.
  const std::size_t W = static_cast<std::size_t>(plan.world_size);
  const std::size_t kept = batches.size() / W * W;
  std::vector<std::vector<std::size_t>> mine;
  mine.reserve(kept / W);
  for (std::size_t i = static_cast<std::size_t>(plan.rank); i < kept; i += W)
    mine.push_back(std::move(batches[i]));
  return mine;
}

Batcher::Batcher(const ExampleSource& source, PackOptions pack, BatchPlanOptions plan)
    : source_(source), pack_(pack), options_(plan) {
  seek(0, 0);
}

namespace {

void check_plan_not_empty(const std::vector<std::vector<std::size_t>>& plan,
                          const ExampleSource& source, const BatchPlanOptions& options,
                          uint64_t epoch) {
  MDS_CHECK(!plan.empty(), "the data is too small: ", source.size(),
            " examples do not make one batch (of at most ", options.batch_tokens,
            " tokens) per rank in epoch ", epoch, " for world_size ", options.world_size,
            "; use more data, fewer ranks or a smaller data.batch_tokens");
}

}  // namespace

Batch Batcher::next() {
  if (position_ >= plan_.size()) {
    plan_ = plan_batches(source_, pack_, options_, epoch_ + 1);
    check_plan_not_empty(plan_, source_, options_, epoch_ + 1);
    ++epoch_;
    position_ = 0;
  }
  return pack_batch(source_, plan_[position_++], pack_);
}

void Batcher::seek(uint64_t epoch, std::size_t position) {
  auto plan = plan_batches(source_, pack_, options_, epoch);
  check_plan_not_empty(plan, source_, options_, epoch);
  MDS_CHECK(position <= plan.size(), "cannot resume at batch ", position, " of epoch ", epoch,
            ": the epoch has ", plan.size(),
            " batches (was the data or data.batch_tokens changed?)");
  plan_ = std::move(plan);
  epoch_ = epoch;
  position_ = position;
}

namespace {

std::size_t median(std::vector<std::size_t>& v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

}  // namespace

const char* where_cut(Truncation t) {
  switch (t) {
    case Truncation::end: return "at the end";
    case Truncation::start: return "at the start";
    case Truncation::middle: return "in the middle";
  }
  return "";
}

LengthCuts length_cuts(const ExampleSource& source, const PackOptions& options) {
  LengthCuts c;
  c.examples = source.size();
  std::vector<std::size_t> src(c.examples), trg(c.examples);
  for (std::size_t i = 0; i < c.examples; ++i) {
    src[i] = source.src(i).size;
    trg[i] = source.trg(i).size;
    if (packed_src_len(src[i], options) < static_cast<int64_t>(src[i])) ++c.src_cut;
    if (packed_trg_len(trg[i], options) < static_cast<int64_t>(trg[i])) ++c.trg_cut;
  }
  c.src_median = median(src);
  c.trg_median = median(trg);
  return c;
}

std::string describe_length_cuts(const LengthCuts& c, const PackOptions& options) {
  const std::string src = c.src_cut == 0
      ? str_cat("none cut (data.max_src_len = ", options.max_src_len, ")")
      : str_cat(c.src_cut, " of ", c.examples, " cut to ", options.max_src_len, " (data.max_src_len, ",
                where_cut(options.truncation), ")");
  // A target keeps max_trg_len - 1 tokens: the EOS takes the last place of its region.
  const std::string trg = c.trg_cut == 0
      ? str_cat("none cut (data.max_trg_len = ", options.max_trg_len, ")")
      : str_cat(c.trg_cut, " of ", c.examples, " cut to ", options.max_trg_len - 1, " (data.max_trg_len = ",
                options.max_trg_len, " with the EOS)");
  return str_cat("sources: median ", c.src_median, " tokens, ", src, "; targets: median ", c.trg_median, " tokens, ", trg);
}

}  // namespace mds::data
