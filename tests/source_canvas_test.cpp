// The target laid out on its source (data.target_canvas = "source"): the canvas, the fewest-edit
// alignment against a brute force over every placement, the training targets packing reads, and the
// configuration check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "data/batcher.h"
#include "data/source_canvas.h"
#include "data/special_tokens.h"

namespace mds::data {
namespace {

constexpr int32_t P = SpecialTokens::pad;

TokenSpan span(const std::vector<int32_t>& v) { return {v.data(), v.size()}; }

std::vector<int32_t> align(const std::vector<int32_t>& src, const std::vector<int32_t>& trg, int slots, bool* cut = nullptr) {
  return align_to_canvas(span(src), span(trg), slots, cut);
}

TEST(SourceCanvas, EverySourceTokenIsFollowedByItsSlots) {
  EXPECT_EQ(source_canvas(span({7, 8, 9}), 1), (std::vector<int32_t>{7, P, 8, P, 9, P}));
  EXPECT_EQ(source_canvas(span({7, 8}), 2), (std::vector<int32_t>{7, P, P, 8, P, P}));
  EXPECT_EQ(source_canvas(span({7, 8}), 0), (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(canvas_length(5, 1), 10);
}

TEST(SourceCanvas, KeptWordsStayInPlaceAndInsertionsTakeTheSlotAfterTheirWord) {
  // Unchanged: every token on itself.
  EXPECT_EQ(align({7, 8, 9}, {7, 8, 9}, 1), (std::vector<int32_t>{7, P, 8, P, 9, P}));
  // An insertion after 7, where the plain layout would shift 8 and 9.
  EXPECT_EQ(align({7, 8, 9}, {7, 20, 8, 9}, 1), (std::vector<int32_t>{7, 20, 8, P, 9, P}));
  // A deletion leaves the word's place empty.
  EXPECT_EQ(align({7, 8, 9}, {7, 9}, 1), (std::vector<int32_t>{7, P, P, P, 9, P}));
  // A substitution takes the word's place (cost 1), not a slot and a deletion (cost 2).
  EXPECT_EQ(align({7, 8, 9}, {7, 21, 9}, 1), (std::vector<int32_t>{7, P, 21, P, 9, P}));
  // Two insertions after one word: with two slots both fit there.
  EXPECT_EQ(align({7, 8}, {7, 20, 21, 8}, 2), (std::vector<int32_t>{7, 20, 21, 8, P, P}));
  // A tie between two equal source words: the earlier one is used.
  EXPECT_EQ(align({7, 7}, {7}, 1), (std::vector<int32_t>{7, P, P, P}));
  // No slots: substitutions and deletions only.
  EXPECT_EQ(align({7, 8, 9}, {8, 9}, 0), (std::vector<int32_t>{P, 8, 9}));
}

TEST(SourceCanvas, ATargetLongerThanItsCanvasKeepsItsFirstTokens) {
  bool cut = false;
  EXPECT_EQ(align({7, 8}, {1, 2, 3, 4, 5}, 1, &cut), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_TRUE(cut);
  align({7, 8}, {7, 8}, 1, &cut);
  EXPECT_FALSE(cut);
  EXPECT_EQ(align({}, {1}, 1, &cut), std::vector<int32_t>{});
  EXPECT_TRUE(cut);
}

// The cost of a placement: target token j in place at[j] (increasing).
int cost_of(const std::vector<int32_t>& canvas, const std::vector<int32_t>& trg, const std::vector<std::size_t>& at, int slots) {
  int cost = 0;
  std::vector<bool> used(canvas.size(), false);
  for (std::size_t j = 0; j < trg.size(); ++j) {
    used[at[j]] = true;
    const bool slot = at[j] % static_cast<std::size_t>(slots + 1) != 0;
    cost += !slot && canvas[at[j]] == trg[j] ? 0 : 1;
  }
  for (std::size_t i = 0; i < canvas.size(); ++i)
    if (!used[i] && i % static_cast<std::size_t>(slots + 1) == 0) ++cost;  // a source word left out
  return cost;
}

// The least cost over every increasing placement of the target in the canvas.
int brute_force_cost(const std::vector<int32_t>& canvas, const std::vector<int32_t>& trg, int slots) {
  int best = 1 << 30;
  std::vector<std::size_t> at;
  const std::function<void(std::size_t)> place = [&](std::size_t from) {
    if (at.size() == trg.size()) {
      best = std::min(best, cost_of(canvas, trg, at, slots));
      return;
    }
    for (std::size_t i = from; i < canvas.size(); ++i) {
      at.push_back(i);
      place(i + 1);
      at.pop_back();
    }
  };
  place(0);
  return best;
}

TEST(SourceCanvas, TheAlignmentHasTheLeastCostOfAnyPlacementAndReadsAsTheTarget) {
  std::mt19937 rng(11);
  for (int round = 0; round < 300; ++round) {
    const int slots = static_cast<int>(rng() % 3);
    std::vector<int32_t> src(1 + rng() % 4), trg(rng() % 7);
    for (auto& x : src) x = 10 + static_cast<int32_t>(rng() % 3);  // few words: many matches and ties
    for (auto& x : trg) x = 10 + static_cast<int32_t>(rng() % 4);
    const std::vector<int32_t> canvas = source_canvas(span(src), slots);
    if (trg.size() > canvas.size()) continue;
    const std::vector<int32_t> out = align(src, trg, slots);
    ASSERT_EQ(out.size(), canvas.size());
    std::vector<int32_t> read, at;
    for (std::size_t i = 0; i < out.size(); ++i)
      if (out[i] != P) read.push_back(out[i]), at.push_back(static_cast<int32_t>(i));
    ASSERT_EQ(read, trg) << "round " << round;
    EXPECT_EQ(cost_of(canvas, trg, std::vector<std::size_t>(at.begin(), at.end()), slots),
              brute_force_cost(canvas, trg, slots))
        << "round " << round;
  }
}

TEST(CanvasTargets, AlignsEachTargetToTheSourcePackingKeeps) {
  InMemorySource inner;
  inner.add({7, 8, 9}, {7, 20, 8});
  inner.add({7, 8}, {1, 2, 3, 4, 5});
  PackOptions pack;
  pack.max_src_len = 2;  // the first example's 9 is cut at the end
  pack.max_trg_len = 5;
  const CanvasTargets canvas(inner, 1, [&](const TokenSpan& s) { return kept_source(s, pack); });
  ASSERT_EQ(canvas.size(), 2u);
  EXPECT_EQ(std::vector<int32_t>(canvas.src(0).begin(), canvas.src(0).end()), (std::vector<int32_t>{7, 8, 9}));
  EXPECT_EQ(std::vector<int32_t>(canvas.trg(0).begin(), canvas.trg(0).end()), (std::vector<int32_t>{7, 20, 8, P}));
  EXPECT_EQ(std::vector<int32_t>(canvas.trg(1).begin(), canvas.trg(1).end()), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(canvas.cut(), 1u);
  // Packed, a canvas target is a target like any other: its empty places are PAD inside the region.
  const Batch b = pack_batch(canvas, {0}, pack);
  EXPECT_EQ(std::vector<int32_t>(b.ids.begin() + 4, b.ids.begin() + 9), (std::vector<int32_t>{7, 20, 8, P, SpecialTokens::eos}));
}

TEST(CanvasTargets, ATargetThatKeepsFewSourceWordsIsWrittenFromTheFirstPlace) {
  InMemorySource inner;
  inner.add({7, 8, 9, 10}, {7, 20, 8, 9, 10});  // keeps 4 of its 5 tokens on equal source words: aligned
  inner.add({7, 8, 9, 10}, {30, 31, 7, 32});    // keeps 1 of 4: a rewrite
  inner.add({7, 8}, {7, 8, 1, 2, 3});           // longer than its canvas: a rewrite, cut
  PackOptions pack;
  pack.max_src_len = 8;
  const auto keep = [&](const TokenSpan& s) { return kept_source(s, pack); };
  const auto trg = [](const CanvasTargets& c, std::size_t i) { return std::vector<int32_t>(c.trg(i).begin(), c.trg(i).end()); };
  const CanvasTargets rewrite(inner, 1, keep, 0.5);
  EXPECT_EQ(trg(rewrite, 0), (std::vector<int32_t>{7, 20, 8, P, 9, P, 10, P}));
  EXPECT_EQ(trg(rewrite, 1), (std::vector<int32_t>{30, 31, 7, 32, P, P, P, P}));
  EXPECT_EQ(trg(rewrite, 2), (std::vector<int32_t>{7, 8, 1, 2}));
  EXPECT_EQ(rewrite.rewritten(), 2u);
  EXPECT_EQ(rewrite.cut(), 1u);
  // Off (0): every target aligned.
  const CanvasTargets aligned(inner, 1, keep);
  EXPECT_EQ(trg(aligned, 1), align({7, 8, 9, 10}, {30, 31, 7, 32}, 1));
  EXPECT_NE(trg(aligned, 1), trg(rewrite, 1));
  EXPECT_EQ(aligned.rewritten(), 0u);
  EXPECT_EQ(kept_on_canvas(align({7, 8, 9}, {7, 21, 9}, 1), span({7, 8, 9}), 1), 2u);
}

// data.canvas_rewrite_compact: the rewrites (and only they) start from their source packed at the
// first places; a batch says so for its rows, and says nothing when no row does.
TEST(CanvasTargets, RewritesStartCompactWhereAskedAndBatchesCarryTheRows) {
  InMemorySource inner;
  inner.add({7, 8, 9, 10}, {7, 20, 8, 9, 10});  // aligned
  inner.add({7, 8, 9, 10}, {30, 31, 7, 32});    // a rewrite
  PackOptions pack;
  pack.max_src_len = 8;
  pack.max_trg_len = 17;
  pack.source_canvas = true;
  const auto compact = on_canvas(inner, pack, 0.5, true);
  EXPECT_FALSE(compact->compact_start(0));
  EXPECT_TRUE(compact->compact_start(1));
  const auto stretched = on_canvas(inner, pack, 0.5, false);  // rewritten, trained from the canvas
  EXPECT_EQ(stretched->rewritten(), 1u);
  EXPECT_FALSE(stretched->compact_start(1));
  EXPECT_FALSE(inner.compact_start(1));
  EXPECT_EQ(pack_batch(*compact, {1, 0}, pack).compact_start, (std::vector<uint8_t>{1, 0}));
  EXPECT_TRUE(pack_batch(*compact, {0}, pack).compact_start.empty());
  EXPECT_TRUE(pack_batch(*stretched, {1, 0}, pack).compact_start.empty());
}

TEST(CanvasTargets, OnCanvasReadsTheExamplesAsPackingDoes) {
  InMemorySource inner;
  inner.add({7, 8, 9}, {7, 20, 9});
  PackOptions pack;
  pack.max_src_len = 2;
  EXPECT_EQ(on_canvas(inner, pack, 0.0), nullptr);  // no canvas: the examples as they are
  pack.source_canvas = true;
  const auto canvas = on_canvas(inner, pack, 0.0);
  ASSERT_NE(canvas, nullptr);
  // The target aligned to the canvas of the source as packing cuts it (7 8), not of 7 8 9.
  EXPECT_EQ(std::vector<int32_t>(canvas->trg(0).begin(), canvas->trg(0).end()), align({7, 8}, {7, 20, 9}, 1));
  EXPECT_NE(align({7, 8}, {7, 20, 9}, 1), align({7, 8, 9}, {7, 20, 9}, 1));
}

TEST(CanvasTargets, TheTargetRegionMustHoldTheCanvas) {
  const std::vector<std::string> on = {"data.target_canvas=source", "data.max_src_len=10"};
  std::vector<std::string> sets = on;
  sets.push_back("data.max_trg_len=20");  // 2 * 10 + the EOS = 21
  try {
    pack_options_from_config(Config::load("", sets));
    ADD_FAILURE() << "a target region too short for the canvas was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.max_trg_len must hold 21"), std::string::npos) << e.what();
  }
  sets.back() = "data.max_trg_len=21";
  const PackOptions p = pack_options_from_config(Config::load("", sets));
  EXPECT_TRUE(p.source_canvas);
  EXPECT_EQ(canvas_stride(p), 2);
  sets.push_back("data.canvas_slots=2");
  sets.push_back("data.max_trg_len=31");
  EXPECT_EQ(canvas_stride(pack_options_from_config(Config::load("", sets))), 3);
  EXPECT_EQ(canvas_stride(pack_options_from_config(Config::load("", {}))), 1);
}

}  // namespace
}  // namespace mds::data
