// The target laid out on its source (data.target_canvas = "source"): every source token followed by
// `slots` empty places, and the target put into that canvas with the fewest edits. A model sampled
// from the source (sample.start_time < 1) then finds each kept word where the source has it, and has
// room to insert words after any of them, where the plain layout (target token j starts from source
// token j) shifts everything after the first insertion. Empty places hold PAD; reading an output
// drops them.
//
// Java -> C# (CodeXGLUE's 499 valid pairs, a 4,000-piece tokenizer trained on the training pairs as the
// quality race trains its own): 9.3% of the target tokens start on an equal source token in the plain
// layout, up to 57.9% (the longest common subsequence) on a canvas.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "data/batcher.h"
#include "data/example_source.h"

namespace mds::data {

// Canvas length for a source of n tokens: n * (slots + 1).
inline int64_t canvas_length(int64_t src_tokens, int slots) { return src_tokens * (slots + 1); }

// The source's canvas: source token i at place i * (slots + 1), PAD in the slots after it.
std::vector<int32_t> source_canvas(const TokenSpan& src, int slots);

// The target aligned to the source's canvas, monotonically, at the least cost: a target token on an
// equal source token costs 0; on a slot or on another source token 1 (an insertion, a substitution);
// a source token left out costs 1 (a deletion), an unused slot 0. Unused places are PAD; the result
// has canvas_length(src.size, slots) places. A target longer than the canvas keeps its first
// canvas-length tokens (`cut`, when given, is set). Ties put inserted tokens as early as they can go.
std::vector<int32_t> align_to_canvas(const TokenSpan& src, const TokenSpan& trg, int slots, bool* cut = nullptr);

// The places of an aligned canvas target whose word is the source word there (not a slot).
std::size_t kept_on_canvas(const std::vector<int32_t>& aligned, const TokenSpan& src, int slots);

// Every example of `inner` (which must outlive it) with its target aligned to its source's canvas.
// The source is the part that packing keeps (`keep`: batcher.h's kept_source); the aligned targets
// are computed once, here. A target that keeps fewer than `rewrite_below` of its tokens on equal
// source words, or that is longer than its canvas, is a rewrite: written from the canvas's first place
// on, PAD after it (data.canvas_rewrite_below). With `compact_rewrites` a rewrite trains from its
// source packed at the first places (compact_start; data.canvas_rewrite_compact), as the plain layout
// starts. cut(): the examples whose target was longer than its canvas; rewritten(): those written from
// the first place.
class CanvasTargets : public ExampleSource {
 public:
  CanvasTargets(const ExampleSource& inner, int slots, const std::function<std::vector<int32_t>(const TokenSpan&)>& keep,
                double rewrite_below = 0.0, bool compact_rewrites = false);
  std::size_t size() const override { return inner_.size(); }
  TokenSpan src(std::size_t i) const override { return inner_.src(i); }
  TokenSpan trg(std::size_t i) const override { return {trg_[i].data(), trg_[i].size()}; }
  bool compact_start(std::size_t i) const override { return compact_[i] != 0; }
  std::size_t cut() const { return cut_; }
  std::size_t rewritten() const { return rewritten_; }

 private:
  const ExampleSource& inner_;
  std::vector<std::vector<int32_t>> trg_;
  std::vector<uint8_t> compact_;
  std::size_t cut_ = 0, rewritten_ = 0;
};

// `examples` as packing under `pack` reads them: on their sources' canvas where pack.source_canvas is
// set (the source cut as packing cuts it), else nullptr (read `examples` as they are).
std::unique_ptr<CanvasTargets> on_canvas(const ExampleSource& examples, const PackOptions& pack, double rewrite_below,
                                         bool compact_rewrites = false);

}  // namespace mds::data
