// Prepared (tokenized once) data: `moe-diffuseq data prepare` writes it, training memory-maps it,
// so a corpus of any size never has to fit in RAM.
//
// DIR/meta.json   format name and version, counts, vocabulary size, tokenizer fingerprint, inputs
// DIR/tokens.bin  int32 little-endian token ids: src_0 trg_0 src_1 trg_1 ...
// DIR/index.bin   header "MDSIDX01" + uint64 count, then per example three uint64:
//                 offset of src (in tokens), src length, trg length (trg follows src)
// DIR/ids.txt     the examples' "id" fields, one a line ("" where absent)
// The exact layout is documented in docs/formats.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/fs.h"
#include "data/example_source.h"
#include "data/tokenizer.h"

namespace mds::data {

struct PrepareStats {
  std::size_t examples = 0;
  std::size_t src_tokens = 0, trg_tokens = 0;
  std::size_t max_src_len = 0, max_trg_len = 0;
  std::size_t skipped = 0;  // empty src or trg
};

// Tokenizes the jsonl inputs into OUT_DIR (created; an existing prepared set there is replaced
// atomically). Reads the inputs as streams.
PrepareStats prepare_dataset(const std::vector<std::string>& inputs, const Tokenizer& tokenizer,
                             const std::string& out_dir);

class PreparedDataset : public ExampleSource {
 public:
  PreparedDataset() = default;
  explicit PreparedDataset(const std::string& dir);  // memory-maps; throws mds::Error naming the file
  // A moved-from dataset is empty.
  PreparedDataset(PreparedDataset&& other) noexcept { *this = std::move(other); }
  PreparedDataset& operator=(PreparedDataset&& other) noexcept;

  std::size_t size() const override { return count_; }
  TokenSpan src(std::size_t i) const override;
  TokenSpan trg(std::size_t i) const override;
  std::string id(std::size_t i) const;  // "" where the input had none
  int32_t vocab_size() const { return vocab_size_; }
  const std::string& tokenizer_fingerprint() const { return fingerprint_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::size_t count_ = 0;
  int32_t vocab_size_ = 0;
  std::string fingerprint_;
  fs::MappedFile tokens_file_, index_file_;
  const int32_t* tokens_ = nullptr;  // into tokens_file_
  const uint64_t* index_ = nullptr;  // into index_file_: 3 per example, after the header
  std::vector<std::string> ids_;
};

}  // namespace mds::data
