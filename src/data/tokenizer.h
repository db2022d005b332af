// SentencePiece tokenizer, trained by the tool on the user's own src and trg text.
//
// A tokenizer directory holds tokenizer.model (the SentencePiece model; the only file needed to
// load it) and tokenizer.json (how it was trained, for humans). Ids 0..5 are the special tokens of
// special_tokens.h; byte fallback is on, so no character is ever unknown.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/special_tokens.h"

namespace sentencepiece { class SentencePieceProcessor; }

namespace mds::data {

struct TokenizerTrainOptions {
  std::vector<std::string> inputs;      // jsonl files; both src and trg text is used
  int vocab_size = 8000;
  std::string model_type = "unigram";   // "unigram" or "bpe"
  double character_coverage = 0.9995;   // the rest goes through byte fallback
  std::string normalization = "nmt_nfkc";  // SentencePiece rule: nmt_nfkc, nfkc, identity, ...
  std::size_t max_sentences = 2000000;  // SentencePiece's input_sentence_size (sampled)
  int threads = 0;                      // 0 = all cores
  uint32_t seed = 1;
};

class Tokenizer {
 public:
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Trains and writes OUT_DIR/tokenizer.model and OUT_DIR/tokenizer.json; returns the loaded tokenizer.
  static Tokenizer train(const TokenizerTrainOptions& options, const std::string& out_dir);
  // `path` is a tokenizer directory or a .model file.
  static Tokenizer load(const std::string& path);
  // From the bytes of a tokenizer.model (as stored in checkpoints).
  static Tokenizer from_serialized(const std::string& model_proto);

  std::vector<int32_t> encode(std::string_view text) const;
  // Special tokens (pad, bos, eos, sep, mask) are dropped; unk decodes as SentencePiece does.
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const;
  std::string piece(int32_t id) const;
  // One entry per id: 1 where the id alone decodes to nothing but whitespace (SentencePiece's lone
  // word boundary "▁", the byte pieces of whitespace, the special tokens), else 0.
  std::vector<uint8_t> blank_ids() const;
  std::string serialized() const;  // the tokenizer.model bytes
  // A short fingerprint of the model (FNV-1a of its bytes, hex) recorded in prepared data.
  std::string fingerprint() const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace mds::data
