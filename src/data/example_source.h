// What the batcher reads from: tokenized (src, trg) examples by index. PreparedDataset (memory-mapped
// files) and InMemorySource (tests, generation inputs) implement it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mds::data {

struct TokenSpan {
  const int32_t* data = nullptr;
  std::size_t size = 0;
  const int32_t* begin() const { return data; }
  const int32_t* end() const { return data + size; }
};

class ExampleSource {
 public:
  virtual ~ExampleSource() = default;
  virtual std::size_t size() const = 0;
  virtual TokenSpan src(std::size_t i) const = 0;  // source tokens, no special tokens
  virtual TokenSpan trg(std::size_t i) const = 0;  // target tokens, no special tokens (may be empty)
  // A target written from its canvas's first place that trains from its source packed there, as the
  // plain layout starts, not stretched over the canvas (data.canvas_rewrite_compact, source_canvas.h).
  virtual bool compact_start(std::size_t /*i*/) const { return false; }
};

class InMemorySource : public ExampleSource {
 public:
  void add(std::vector<int32_t> src, std::vector<int32_t> trg) {
    src_.push_back(std::move(src));
    trg_.push_back(std::move(trg));
  }
  std::size_t size() const override { return src_.size(); }
  TokenSpan src(std::size_t i) const override { return {src_[i].data(), src_[i].size()}; }
  TokenSpan trg(std::size_t i) const override { return {trg_[i].data(), trg_[i].size()}; }

 private:
  std::vector<std::vector<int32_t>> src_, trg_;
};

// Every example of `inner`, then every example again with source and target swapped (data.swap_pairs):
// example n + i is (trg_i -> src_i), for n = inner->size().
class SwappedPairs : public ExampleSource {
 public:
  explicit SwappedPairs(std::unique_ptr<ExampleSource> inner) : inner_(std::move(inner)) {}
  std::size_t size() const override { return 2 * inner_->size(); }
  TokenSpan src(std::size_t i) const override { return i < inner_->size() ? inner_->src(i) : inner_->trg(i - inner_->size()); }
  TokenSpan trg(std::size_t i) const override { return i < inner_->size() ? inner_->trg(i) : inner_->src(i - inner_->size()); }

 private:
  std::unique_ptr<ExampleSource> inner_;
};

}  // namespace mds::data
