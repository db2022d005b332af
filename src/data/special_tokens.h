// Ids of the special tokens every tokenizer trained by the tool has, fixed so that the model, the
// batcher and the prepared data agree without looking them up.
#pragma once

#include <cstdint>

namespace mds::data {

struct SpecialTokens {
  static constexpr int32_t pad = 0;   // padding; also generated after the end of a target
  static constexpr int32_t unk = 1;   // never produced with byte fallback on, kept for SentencePiece
  static constexpr int32_t bos = 2;   // first token of every packed sequence (a global token)
  static constexpr int32_t eos = 3;   // end of the target
  static constexpr int32_t sep = 4;   // between source and target (a global token)
  static constexpr int32_t mask = 5;  // reserved for masked / absorbing variants
  static constexpr int32_t count = 6;
};

}  // namespace mds::data
