// The SentencePiece module seen from the data layer: the module opened once, the callbacks that
// collect what its calls return, and the check that a model has the project's special tokens.
// Private to src/data (tokenizer.cpp, tokenizer_train.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/sentencepiece/module_api.h"
#include "data/tokenizer.h"

namespace mds::data::detail {

// Opens libmds_sentencepiece.so once (data/sentencepiece/module_api.h says why it is a module).
// Looked for in $MDS_SENTENCEPIECE_MODULE, beside the executable, in ../lib/moe-diffuseq from it
// (installed), then where the build put it.
const mds_spm_api& spm();

// Collects the outputs of one module call.
struct SpmResults {
  std::vector<int32_t> ids;
  std::string text, error;
  static void on_ids(void* ctx, const int* ids, size_t n) {
    static_cast<SpmResults*>(ctx)->ids.assign(ids, ids + n);
  }
  static void on_text(void* ctx, const char* data, size_t n) { static_cast<SpmResults*>(ctx)->text.append(data, n); }
  static void on_error(void* ctx, const char* data, size_t n) {
    static_cast<SpmResults*>(ctx)->error.append(data, n);
  }
};

// The pieces of ids 0..5 ("<pad>", "<unk>", "<s>", "</s>", "<sep>", "<mask>").
extern const char* const kSpecialPieces[SpecialTokens::count];

// Throws unless the model has the project's special tokens at ids 0..5; `origin` names it.
void check_special_pieces(const Tokenizer& tokenizer, const std::string& origin);

}  // namespace mds::data::detail
