#include "data/batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <set>

#include "core/config.h"
#include "core/error.h"
#include "data/special_tokens.h"
#include "test_util.h"

namespace mds {

using data::Batch;
using data::BatchPlanOptions;
using data::Batcher;
using data::GlobalTokens;
using data::InMemorySource;
using data::PackOptions;
using data::SpecialTokens;
using data::TargetPadding;
using data::Truncation;
using data::batch_plan_options_from_config;
using data::longest_row;
using data::pack_batch;
using data::pack_options_from_config;
using data::packed_src_len;
using data::packed_trg_len;
using data::parse_global_tokens;
using data::parse_target_padding;
using data::parse_truncation;
using data::plan_batches;

namespace {

using test::error_of;

using Ids = std::vector<int32_t>;
using Mask = std::vector<uint8_t>;
using Plan = std::vector<std::vector<std::size_t>>;

constexpr int32_t P = SpecialTokens::pad, BOS = SpecialTokens::bos, EOS = SpecialTokens::eos,
                  SEP = SpecialTokens::sep;

InMemorySource two_examples() {
  InMemorySource s;
  s.add({10, 11, 12}, {30, 31});
  s.add({20}, {40, 41, 42, 43});
  return s;
}

// data.swap_pairs: every pair, then every pair read the other way round; a batch packs the swapped
// pair with the old target as its source.
TEST(SwappedPairs, AppendsEveryPairTheOtherWayRound) {
  auto inner = std::make_unique<InMemorySource>();
  inner->add({10, 11, 12}, {20, 21});
  inner->add({13}, {22, 23, 24, 25});
  data::SwappedPairs both(std::move(inner));
  ASSERT_EQ(both.size(), 4u);
  auto ids = [](data::TokenSpan s) { return std::vector<int32_t>(s.begin(), s.end()); };
  EXPECT_EQ(ids(both.src(0)), (std::vector<int32_t>{10, 11, 12}));
  EXPECT_EQ(ids(both.trg(1)), (std::vector<int32_t>{22, 23, 24, 25}));
  EXPECT_EQ(ids(both.src(2)), (std::vector<int32_t>{20, 21}));
  EXPECT_EQ(ids(both.trg(2)), (std::vector<int32_t>{10, 11, 12}));
  EXPECT_EQ(ids(both.src(3)), (std::vector<int32_t>{22, 23, 24, 25}));
  EXPECT_EQ(ids(both.trg(3)), (std::vector<int32_t>{13}));
  PackOptions o;
  o.max_src_len = 8;
  o.max_trg_len = 6;
  const Batch b = pack_batch(both, {3}, o);
  EXPECT_EQ(b.src_len[0], 4);
  EXPECT_EQ(b.trg_len[0], 1);
  EXPECT_EQ(b.ids[1], 22);
  EXPECT_EQ(b.ids[static_cast<std::size_t>(b.src_region + 2)], 13);
}

TEST(Batcher, ParseNames) {
  EXPECT_EQ(parse_truncation("end"), Truncation::end);
  EXPECT_EQ(parse_truncation("start"), Truncation::start);
  EXPECT_EQ(parse_truncation("middle"), Truncation::middle);
  EXPECT_EQ(parse_target_padding("max"), TargetPadding::max);
  EXPECT_EQ(parse_target_padding("batch"), TargetPadding::batch);
  EXPECT_EQ(parse_global_tokens("none"), GlobalTokens::none);
  EXPECT_EQ(parse_global_tokens("bos+sep"), GlobalTokens::bos_sep);
  EXPECT_EQ(parse_global_tokens("bos+sep+target"), GlobalTokens::bos_sep_target);
  EXPECT_NE(error_of([] { parse_truncation("left"); }).find("end, start, middle"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_target_padding("longest"); }).find("max, batch"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_global_tokens("bos"); }).find("none, bos+sep, bos+sep+target"),
            std::string::npos);
}

TEST(Batcher, OptionsFromConfigCheckTheTokenBudget) {
  const PackOptions pack = pack_options_from_config(Config::load("", {"data.max_src_len=50", "data.max_trg_len=20"}));
  EXPECT_EQ(pack.max_src_len, 50);
  EXPECT_EQ(pack.max_trg_len, 20);
  EXPECT_EQ(longest_row(pack), 72);
  const std::string msg =
      error_of([] { batch_plan_options_from_config(Config::load("", {"data.batch_tokens=100"}), true); });
  EXPECT_NE(msg.find("--set: data.batch_tokens = 100"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1154"), std::string::npos) << msg;  // 1024 + 128 + 2
}

TEST(Batcher, PackedLengths) {
  PackOptions o;
  o.max_src_len = 5;
  o.max_trg_len = 4;
  EXPECT_EQ(packed_src_len(3, o), 3);
  EXPECT_EQ(packed_src_len(9, o), 5);
  EXPECT_EQ(packed_trg_len(0, o), 0);
  EXPECT_EQ(packed_trg_len(3, o), 3);
  EXPECT_EQ(packed_trg_len(4, o), 3);  // room for the EOS
}

TEST(Batcher, LengthCutsCountWhatTheLimitsDrop) {
  PackOptions o;
  o.max_src_len = 5;
  o.max_trg_len = 4;  // 3 target tokens and the EOS
  InMemorySource s;
  s.add(std::vector<int32_t>(9, 7), std::vector<int32_t>(3, 7));  // source cut
  s.add(std::vector<int32_t>(5, 7), std::vector<int32_t>(4, 7));  // target cut (no room for the EOS)
  s.add(std::vector<int32_t>(2, 7), {});
  const data::LengthCuts cuts = data::length_cuts(s, o);
  EXPECT_EQ(cuts.examples, 3u);
  EXPECT_EQ(cuts.src_cut, 1u);
  EXPECT_EQ(cuts.trg_cut, 1u);
  EXPECT_EQ(cuts.src_median, 5u);
  EXPECT_EQ(cuts.trg_median, 3u);
  EXPECT_EQ(data::describe_length_cuts(cuts, o),
            "sources: median 5 tokens, 1 of 3 cut to 5 (data.max_src_len, at the end); "
            "targets: median 3 tokens, 1 of 3 cut to 3 (data.max_trg_len = 4 with the EOS)");
  o.max_src_len = 9;
  o.max_trg_len = 5;
  o.truncation = data::Truncation::middle;
  EXPECT_EQ(data::describe_length_cuts(data::length_cuts(s, o), o),
            "sources: median 5 tokens, none cut (data.max_src_len = 9); "
            "targets: median 3 tokens, none cut (data.max_trg_len = 5)");
  EXPECT_STREQ(data::where_cut(data::Truncation::middle), "in the middle");
  EXPECT_STREQ(data::where_cut(data::Truncation::start), "at the start");
}

TEST(Batcher, PackTwoExamplesTargetPadMax) {
  InMemorySource s = two_examples();
  PackOptions o;
  o.max_src_len = 8;
  o.max_trg_len = 4;
  o.trg_pad = TargetPadding::max;
  Batch b = pack_batch(s, {0, 1}, o);
  EXPECT_EQ(b.batch_size, 2);
  EXPECT_EQ(b.src_region, 3);
  EXPECT_EQ(b.trg_region, 4);
  EXPECT_EQ(b.length, 9);
  EXPECT_EQ(b.tokens(), 18);
  EXPECT_EQ(b.ids, (Ids{BOS, 10, 11, 12, SEP, 30, 31, EOS, P,  //
                        BOS, 20, P, P, SEP, 40, 41, 42, EOS}));
  EXPECT_EQ(b.trg_mask, (Mask{0, 0, 0, 0, 0, 1, 1, 1, 1,  //
                              0, 0, 0, 0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(b.key_mask, (Mask{1, 1, 1, 1, 1, 1, 1, 1, 1,  //
                              1, 1, 0, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(b.global_mask, (Mask{1, 0, 0, 0, 1, 0, 0, 0, 0,  //
                                 1, 0, 0, 0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(b.src_len, (std::vector<int32_t>{3, 1}));
  EXPECT_EQ(b.trg_len, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(b.example, (std::vector<std::size_t>{0, 1}));

  // The order of the rows follows the list given.
  Batch r = pack_batch(s, {1, 0}, o);
  EXPECT_EQ(r.ids, (Ids{BOS, 20, P, P, SEP, 40, 41, 42, EOS,  //
                        BOS, 10, 11, 12, SEP, 30, 31, EOS, P}));
  EXPECT_EQ(r.example, (std::vector<std::size_t>{1, 0}));
}

TEST(Batcher, PackTwoExamplesTargetPadBatch) {
  InMemorySource s = two_examples();
  PackOptions o;
  o.max_src_len = 8;
  o.max_trg_len = 4;
  o.trg_pad = TargetPadding::batch;
  // The second target is cut to 3 tokens, so the batch's target region is 3 + 1 = max_trg_len.
  Batch b = pack_batch(s, {0, 1}, o);
  EXPECT_EQ(b.trg_region, 4);
  EXPECT_EQ(b.ids, (Ids{BOS, 10, 11, 12, SEP, 30, 31, EOS, P,  //
                        BOS, 20, P, P, SEP, 40, 41, 42, EOS}));

  // With room to spare, "batch" stops after the longest target + EOS, "max" pads to max_trg_len.
  o.max_trg_len = 8;
  b = pack_batch(s, {0, 1}, o);
  EXPECT_EQ(b.trg_region, 5);
  EXPECT_EQ(b.length, 10);
  EXPECT_EQ(b.ids, (Ids{BOS, 10, 11, 12, SEP, 30, 31, EOS, P, P,  //
                        BOS, 20, P, P, SEP, 40, 41, 42, 43, EOS}));
  EXPECT_EQ(b.trg_mask, (Mask{0, 0, 0, 0, 0, 1, 1, 1, 1, 1,  //
                              0, 0, 0, 0, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(b.key_mask, (Mask{1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  //
                              1, 1, 0, 0, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(b.trg_len, (std::vector<int32_t>{2, 4}));

  o.trg_pad = TargetPadding::max;
  b = pack_batch(s, {0, 1}, o);
  EXPECT_EQ(b.trg_region, 8);
  EXPECT_EQ(b.ids, (Ids{BOS, 10, 11, 12, SEP, 30, 31, EOS, P, P, P, P, P,  //
                        BOS, 20, P, P, SEP, 40, 41, 42, 43, EOS, P, P, P}));
}

TEST(Batcher, Truncation) {
  InMemorySource s;
  s.add({100, 101, 102, 103, 104, 105, 106, 107, 108, 109}, {7});
  PackOptions o;
  o.max_src_len = 4;
  o.max_trg_len = 2;
  o.truncation = Truncation::end;
  EXPECT_EQ(pack_batch(s, {0}, o).ids, (Ids{BOS, 100, 101, 102, 103, SEP, 7, EOS}));
  o.truncation = Truncation::start;
  EXPECT_EQ(pack_batch(s, {0}, o).ids, (Ids{BOS, 106, 107, 108, 109, SEP, 7, EOS}));
  o.truncation = Truncation::middle;
  EXPECT_EQ(pack_batch(s, {0}, o).ids, (Ids{BOS, 100, 101, 108, 109, SEP, 7, EOS}));
  o.max_src_len = 5;  // odd budget: the head gets the extra token
  EXPECT_EQ(pack_batch(s, {0}, o).ids, (Ids{BOS, 100, 101, 102, 108, 109, SEP, 7, EOS}));
  EXPECT_EQ(pack_batch(s, {0}, o).src_len, (std::vector<int32_t>{5}));
  o.max_src_len = 1;
  EXPECT_EQ(pack_batch(s, {0}, o).ids, (Ids{BOS, 100, SEP, 7, EOS}));
  // A source within the budget is kept whole, whatever the policy.
  o.max_src_len = 10;
  for (Truncation t : {Truncation::end, Truncation::start, Truncation::middle}) {
    o.truncation = t;
    EXPECT_EQ(pack_batch(s, {0}, o).ids,
              (Ids{BOS, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, SEP, 7, EOS}));
  }
  // The target always keeps its start.
  InMemorySource t;
  t.add({1 + 10}, {50, 51, 52, 53, 54});
  o.max_trg_len = 3;
  EXPECT_EQ(pack_batch(t, {0}, o).ids, (Ids{BOS, 11, SEP, 50, 51, EOS}));
}

TEST(Batcher, GlobalTokens) {
  InMemorySource s = two_examples();
  PackOptions o;
  o.max_src_len = 8;
  o.max_trg_len = 4;
  o.globals = GlobalTokens::none;
  EXPECT_EQ(pack_batch(s, {0, 1}, o).global_mask, Mask(18, 0));
  o.globals = GlobalTokens::bos_sep;
  EXPECT_EQ(pack_batch(s, {0, 1}, o).global_mask, (Mask{1, 0, 0, 0, 1, 0, 0, 0, 0,  //
                                                        1, 0, 0, 0, 1, 0, 0, 0, 0}));
  o.globals = GlobalTokens::bos_sep_target;
  EXPECT_EQ(pack_batch(s, {0, 1}, o).global_mask, (Mask{1, 0, 0, 0, 1, 1, 1, 1, 1,  //
                                                        1, 0, 0, 0, 1, 1, 1, 1, 1}));
}

TEST(Batcher, EmptyTargetAndEmptySource) {
  InMemorySource s;
  s.add({10, 11}, {});  // a generation input
  s.add({}, {30});
  PackOptions o;
  o.max_src_len = 8;
  o.max_trg_len = 3;
  Batch b = pack_batch(s, {0}, o);
  EXPECT_EQ(b.ids, (Ids{BOS, 10, 11, SEP, EOS, P, P}));
  EXPECT_EQ(b.trg_mask, (Mask{0, 0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(b.trg_len, (std::vector<int32_t>{0}));
  o.trg_pad = TargetPadding::batch;
  EXPECT_EQ(pack_batch(s, {0}, o).ids, (Ids{BOS, 10, 11, SEP, EOS}));
  // All sources empty: S = 0, L = T + 2.
  b = pack_batch(s, {1}, o);
  EXPECT_EQ(b.src_region, 0);
  EXPECT_EQ(b.length, 4);
  EXPECT_EQ(b.ids, (Ids{BOS, SEP, 30, EOS}));
  EXPECT_EQ(b.key_mask, (Mask{1, 1, 1, 1}));
  EXPECT_EQ(b.global_mask, (Mask{1, 1, 0, 0}));
  b = pack_batch(s, {0, 1}, o);
  EXPECT_EQ(b.ids, (Ids{BOS, 10, 11, SEP, EOS, P,  //
                        BOS, P, P, SEP, 30, EOS}));
  EXPECT_EQ(b.key_mask, (Mask{1, 1, 1, 1, 1, 1,  //
                              1, 0, 0, 1, 1, 1}));
}

InMemorySource random_source(std::mt19937& rng, std::size_t n, int max_src, int max_trg) {
  InMemorySource s;
  std::uniform_int_distribution<int> src_len(0, max_src), trg_len(0, max_trg), tok(6, 99);
  for (std::size_t i = 0; i < n; ++i) {
    Ids a(src_len(rng)), b(trg_len(rng));
    for (auto& x : a) x = tok(rng);
    for (auto& x : b) x = tok(rng);
    s.add(a, b);
  }
  return s;
}

void expect_each_once(const Plan& plan, std::size_t n) {
  std::vector<int> seen(n, 0);
  for (const auto& batch : plan) {
    EXPECT_FALSE(batch.empty());
    for (std::size_t e : batch) ++seen.at(e);
  }
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "example " << i;
}

TEST(Batcher, BudgetNeverExceededAndEachExampleOnce) {
  std::mt19937 rng(7);
  for (int round = 0; round < 40; ++round) {
    std::size_t n = 1 + rng() % 400;
    PackOptions o;
    o.max_src_len = 1 + static_cast<int>(rng() % 60);
    o.max_trg_len = 1 + static_cast<int>(rng() % 20);
    o.trg_pad = round % 2 ? TargetPadding::batch : TargetPadding::max;
    o.truncation = static_cast<Truncation>(round % 3);
    InMemorySource s = random_source(rng, n, 80, 30);
    for (std::size_t extra : {0, 7, 100, 1000}) {
      BatchPlanOptions p;
      p.batch_tokens = o.max_src_len + o.max_trg_len + 2 + extra;
      p.max_batch_size = round % 3 == 0 ? 0 : 1 + rng() % 8;
      p.bucket_window = round % 4;  // 0 = no length sorting
      p.shuffle = round % 5 != 0;
      p.seed = round;
      for (uint64_t epoch = 0; epoch < 2; ++epoch) {
        Plan plan = plan_batches(s, o, p, epoch);
        expect_each_once(plan, n);
        for (const auto& batch : plan) {
          Batch b = pack_batch(s, batch, o);
          EXPECT_LE(b.tokens(), static_cast<int64_t>(p.batch_tokens));
          if (p.max_batch_size) { EXPECT_LE(batch.size(), p.max_batch_size); }
          EXPECT_EQ(b.ids.size(), static_cast<std::size_t>(b.tokens()));
        }
      }
    }
  }
}

TEST(Batcher, GreedyFillsTheBudget) {
  // 12 rows of the same shape (L = 3 + 4 + 2 = 9) in a budget of 40 tokens: batches of 4.
  InMemorySource s;
  for (int i = 0; i < 12; ++i) s.add({10, 11, 12}, {30});
  PackOptions o;
  o.max_src_len = 3;
  o.max_trg_len = 4;
  BatchPlanOptions p;
  p.batch_tokens = 40;
  Plan plan = plan_batches(s, o, p, 0);
  ASSERT_EQ(plan.size(), 3u);
  for (const auto& batch : plan) EXPECT_EQ(batch.size(), 4u);
  p.max_batch_size = 3;
  EXPECT_EQ(plan_batches(s, o, p, 0).size(), 4u);
  // Without shuffling the plan is the examples in order.
  p.shuffle = false;
  p.max_batch_size = 0;
  EXPECT_EQ(plan_batches(s, o, p, 0),
            (Plan{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}}));
}

TEST(Batcher, LengthSortingReducesPadding) {
  std::mt19937 rng(3);
  InMemorySource s = random_source(rng, 2000, 200, 40);
  PackOptions o;
  o.max_src_len = 200;
  o.max_trg_len = 41;
  o.trg_pad = TargetPadding::batch;
  BatchPlanOptions p;
  p.batch_tokens = 4096;
  auto padding = [&](std::size_t window) {
    p.bucket_window = window;
    int64_t pad = 0;
    for (const auto& batch : plan_batches(s, o, p, 0)) {
      Batch b = pack_batch(s, batch, o);
      for (int64_t r = 0; r < b.batch_size; ++r)
        pad += b.src_region - b.src_len[r] + b.trg_region - b.trg_len[r] - 1;
    }
    return pad;
  };
  EXPECT_LT(padding(10) * 3, padding(0));
}

TEST(Batcher, Determinism) {
  std::mt19937 rng(11);
  InMemorySource s = random_source(rng, 500, 30, 10);
  PackOptions o;
  o.max_src_len = 32;
  o.max_trg_len = 12;
  BatchPlanOptions p;
  p.batch_tokens = 300;
  p.seed = 5;
  Plan a = plan_batches(s, o, p, 0);
  EXPECT_EQ(a, plan_batches(s, o, p, 0));
  EXPECT_NE(a, plan_batches(s, o, p, 1));
  p.seed = 6;
  EXPECT_NE(a, plan_batches(s, o, p, 0));
  p.seed = 5;
  // The order of examples within an epoch differs too, not only the order of batches.
  Plan b = plan_batches(s, o, p, 1);
  std::set<std::vector<std::size_t>> sa(a.begin(), a.end()), sb(b.begin(), b.end());
  EXPECT_NE(sa, sb);
}

TEST(Batcher, Sharding) {
  std::mt19937 rng(13);
  InMemorySource s = random_source(rng, 700, 30, 10);
  PackOptions o;
  o.max_src_len = 32;
  o.max_trg_len = 12;
  BatchPlanOptions p;
  p.batch_tokens = 256;
  p.seed = 9;
  const Plan all = plan_batches(s, o, p, 3);
  for (int world : {2, 3, 5}) {
    p.world_size = world;
    const std::size_t per_rank = all.size() / world;
    ASSERT_GT(per_rank, 0u);
    std::set<std::size_t> seen;
    std::size_t total = 0;
    for (int r = 0; r < world; ++r) {
      p.rank = r;
      Plan mine = plan_batches(s, o, p, 3);
      ASSERT_EQ(mine.size(), per_rank);
      for (std::size_t i = 0; i < mine.size(); ++i) {
        EXPECT_EQ(mine[i], all[r + i * world]);
        for (std::size_t e : mine[i]) {
          EXPECT_TRUE(seen.insert(e).second) << "example " << e << " on two ranks";
          ++total;
        }
      }
    }
    // The union is everything but the batches left over after an even split.
    std::size_t expected = 0;
    for (std::size_t i = 0; i < per_rank * world; ++i) expected += all[i].size();
    EXPECT_EQ(total, expected);
  }
  p.world_size = 2;
  p.rank = 2;
  EXPECT_NE(error_of([&] { plan_batches(s, o, p, 0); }).find("rank"), std::string::npos);
  p.world_size = 0;
  p.rank = 0;
  EXPECT_NE(error_of([&] { plan_batches(s, o, p, 0); }).find("world_size"), std::string::npos);
}

TEST(Batcher, BudgetTooSmall) {
  InMemorySource s = two_examples();
  PackOptions o;
  o.max_src_len = 100;
  o.max_trg_len = 28;
  BatchPlanOptions p;
  p.batch_tokens = 129;
  std::string msg = error_of([&] { plan_batches(s, o, p, 0); });
  EXPECT_NE(msg.find("data.batch_tokens"), std::string::npos) << msg;
  EXPECT_NE(msg.find("130"), std::string::npos) << msg;
  p.batch_tokens = 130;
  EXPECT_NO_THROW(plan_batches(s, o, p, 0));
}

TEST(Batcher, IteratesAcrossEpochsAndSeeks) {
  std::mt19937 rng(17);
  InMemorySource s = random_source(rng, 120, 20, 8);
  PackOptions o;
  o.max_src_len = 20;
  o.max_trg_len = 9;
  BatchPlanOptions p;
  p.batch_tokens = 200;
  p.seed = 1;
  Batcher a(s, o, p);
  const std::size_t per_epoch = a.batches_per_epoch();
  ASSERT_GT(per_epoch, 2u);
  struct Taken { uint64_t epoch; std::size_t position; Batch batch; };
  std::vector<Taken> taken;
  for (std::size_t i = 0; i < 3 * per_epoch; ++i) {
    uint64_t e = a.epoch();
    std::size_t pos = a.position();
    taken.push_back({e, pos, a.next()});
  }
  EXPECT_EQ(a.epoch(), 2u);
  EXPECT_EQ(a.position(), per_epoch);
  // Each epoch covers every example once, and matches plan_batches.
  for (uint64_t e = 0; e < 3; ++e) {
    Plan plan = plan_batches(s, o, p, e);
    ASSERT_EQ(plan.size(), per_epoch);
    expect_each_once(plan, s.size());
    for (std::size_t i = 0; i < per_epoch; ++i)
      EXPECT_EQ(taken[e * per_epoch + i].batch.example, plan[i]);
  }
  // Resuming anywhere (including at an epoch's end) gives the uninterrupted sequence.
  for (std::size_t start : {std::size_t{0}, per_epoch - 2, per_epoch, per_epoch + 1}) {
    Batcher b(s, o, p);
    uint64_t epoch = start == per_epoch ? 0 : taken[start].epoch;
    std::size_t pos = start == per_epoch ? per_epoch : taken[start].position;
    b.seek(epoch, pos);
    for (std::size_t i = start; i < taken.size(); ++i) {
      Batch x = b.next();
      EXPECT_EQ(x.example, taken[i].batch.example) << "batch " << i << " after seek to " << start;
      EXPECT_EQ(x.ids, taken[i].batch.ids);
      EXPECT_EQ(x.key_mask, taken[i].batch.key_mask);
    }
  }
  Batcher c(s, o, p);
  EXPECT_NE(error_of([&] { c.seek(0, per_epoch + 1); }).find("cannot resume"), std::string::npos);
}

TEST(Batcher, TooLittleDataForTheWorld) {
  InMemorySource s = two_examples();
  PackOptions o;
  o.max_src_len = 8;
  o.max_trg_len = 4;
  BatchPlanOptions p;
  p.batch_tokens = 1000;  // one batch holds everything
  p.world_size = 2;
  std::string msg = error_of([&] { Batcher b(s, o, p); });
  EXPECT_NE(msg.find("too small"), std::string::npos) << msg;
  p.world_size = 1;
  Batcher b(s, o, p);
  EXPECT_EQ(b.batches_per_epoch(), 1u);
  EXPECT_EQ(b.next().batch_size, 2);
  EXPECT_EQ(b.next().batch_size, 2);
  EXPECT_EQ(b.epoch(), 1u);
}

}  // namespace
}  // namespace mds
