#include "data/source_canvas.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "data/special_tokens.h"

namespace mds::data {

std::vector<int32_t> source_canvas(const TokenSpan& src, int slots) {
  MDS_CHECK(slots >= 0, "data.canvas_slots must be >= 0, got ", slots);
  std::vector<int32_t> canvas(static_cast<std::size_t>(canvas_length(static_cast<int64_t>(src.size), slots)),
                              SpecialTokens::pad);
  for (std::size_t i = 0; i < src.size; ++i) canvas[i * static_cast<std::size_t>(slots + 1)] = src.data[i];
  return canvas;
}

std::vector<int32_t> align_to_canvas(const TokenSpan& src, const TokenSpan& trg, int slots, bool* cut) {
  const std::vector<int32_t> canvas = source_canvas(src, slots);
  const std::size_t n = canvas.size(), m = std::min(trg.size, n);
  if (cut != nullptr) *cut = trg.size > n;
  const auto is_slot = [&](std::size_t i) { return i % static_cast<std::size_t>(slots + 1) != 0; };
  const auto skip_cost = [&](std::size_t i) { return is_slot(i) ? 0 : 1; };
  const auto place_cost = [&](std::size_t i, std::size_t j) { return !is_slot(i) && canvas[i] == trg.data[j] ? 0 : 1; };
  // D[i][j]: the least cost of the first j target tokens in the first i places.
  constexpr int32_t kFar = std::numeric_limits<int32_t>::max() / 2;
  const std::size_t W = m + 1;
  std::vector<int32_t> D((n + 1) * W, kFar);
  D[0] = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j <= std::min(i, m); ++j) {
      const int32_t d = D[i * W + j];
      if (d >= kFar) continue;
      int32_t& skip = D[(i + 1) * W + j];
      skip = std::min(skip, d + skip_cost(i));
      if (j < m) {
        int32_t& place = D[(i + 1) * W + j + 1];
        place = std::min(place, d + place_cost(i, j));
      }
    }
  // Back from the end; on a tie the place is left empty, so that tokens sit as early as they can.
  std::vector<int32_t> out(n, SpecialTokens::pad);
  std::size_t j = m;
  for (std::size_t i = n; i > 0; --i) {
    const int32_t here = D[i * W + j];
    if (here == D[(i - 1) * W + j] + skip_cost(i - 1) && D[(i - 1) * W + j] < kFar) continue;
    MDS_CHECK(j > 0 && here == D[(i - 1) * W + j - 1] + place_cost(i - 1, j - 1), "align_to_canvas: no way back at ", i);
    out[i - 1] = trg.data[--j];
  }
  return out;
}

std::size_t kept_on_canvas(const std::vector<int32_t>& aligned, const TokenSpan& src, int slots) {
  std::size_t kept = 0;
  const std::size_t stride = static_cast<std::size_t>(slots + 1);
  for (std::size_t i = 0; i < src.size && i * stride < aligned.size(); ++i) kept += aligned[i * stride] == src.data[i] ? 1 : 0;
  return kept;
}

CanvasTargets::CanvasTargets(const ExampleSource& inner, int slots,
                             const std::function<std::vector<int32_t>(const TokenSpan&)>& keep, double rewrite_below,
                             bool compact_rewrites)
    : inner_(inner) {
  trg_.reserve(inner_.size());
  compact_.assign(inner_.size(), 0);
  for (std::size_t i = 0; i < inner_.size(); ++i) {
    const std::vector<int32_t> src = keep(inner_.src(i));
    const TokenSpan src_span{src.data(), src.size()}, trg = inner_.trg(i);
    bool cut = false;
    std::vector<int32_t> aligned = align_to_canvas(src_span, trg, slots, &cut);
    cut_ += cut ? 1 : 0;
    const double kept = static_cast<double>(kept_on_canvas(aligned, src_span, slots));
    if (rewrite_below > 0 && (cut || kept < rewrite_below * static_cast<double>(trg.size))) {
      std::fill(aligned.begin(), aligned.end(), SpecialTokens::pad);
      std::copy(trg.data, trg.data + std::min(trg.size, aligned.size()), aligned.begin());
      ++rewritten_;
      compact_[i] = compact_rewrites ? 1 : 0;
    }
    trg_.push_back(std::move(aligned));
  }
}

std::unique_ptr<CanvasTargets> on_canvas(const ExampleSource& examples, const PackOptions& pack, double rewrite_below,
                                         bool compact_rewrites) {
  if (!pack.source_canvas) return nullptr;
  return std::make_unique<CanvasTargets>(
      examples, pack.canvas_slots, [pack](const TokenSpan& src) { return kept_source(src, pack); }, rewrite_below,
      compact_rewrites);
}

}  // namespace mds::data
