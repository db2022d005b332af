// SentencePiece behind mds::Tokenizer: loading, encoding, decoding (training: tokenizer_train.cpp).
#include "data/tokenizer.h"

// Only for the complete type that the destructor of sp_ deletes (its destructor is virtual, so no
// SentencePiece symbol is linked); every call goes through the module.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cctype>
#include <string>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/sentencepiece_loader.h"

namespace mds::data {
namespace {

using detail::check_special_pieces;
using detail::spm;
using detail::SpmResults;

void append_bytes(void* ctx, const char* data, size_t size) {
  static_cast<std::string*>(ctx)->append(data, size);
}


}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::string& path) {
  std::string file = path;
  if (fs::is_directory(path)) file = fs::join(path, "tokenizer.model");
  MDS_CHECK(fs::exists(file), file, ": no such file (expected a tokenizer directory or a "
            "tokenizer.model)");
  const std::string bytes = fs::read_file(file);
  SpmResults out;
  void* sp = spm().load(bytes.data(), bytes.size(), &SpmResults::on_error, &out);
  MDS_CHECK(sp, file, ": not a SentencePiece model: ", out.error);
  Tokenizer tok;
  tok.sp_.reset(static_cast<sentencepiece::SentencePieceProcessor*>(sp));
  check_special_pieces(tok, file);
  return tok;
}

Tokenizer Tokenizer::from_serialized(const std::string& model_proto) {
  SpmResults out;
  void* sp = spm().load(model_proto.data(), model_proto.size(), &SpmResults::on_error, &out);
  MDS_CHECK(sp, "not a SentencePiece model: ", out.error);
  Tokenizer tok;
  tok.sp_.reset(static_cast<sentencepiece::SentencePieceProcessor*>(sp));
  check_special_pieces(tok, "serialized tokenizer");
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  MDS_ASSERT(sp_);
  SpmResults out;
  const int failed = spm().encode(sp_.get(), text.data(), text.size(), &SpmResults::on_ids,
                                  &SpmResults::on_error, &out);
  MDS_CHECK(!failed, "tokenizer: cannot encode text: ", out.error);
  return std::move(out.ids);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  MDS_ASSERT(sp_);
  const int32_t n = vocab_size();
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    if (id == SpecialTokens::pad || id == SpecialTokens::bos || id == SpecialTokens::eos ||
        id == SpecialTokens::sep || id == SpecialTokens::mask)
      continue;
    MDS_CHECK(id >= 0 && id < n, "tokenizer: cannot decode id ", id, ": the vocabulary has ", n,
              " pieces");
    kept.push_back(id);
  }
  SpmResults out;
  const int failed = spm().decode(sp_.get(), kept.data(), kept.size(), &SpmResults::on_text,
                                  &SpmResults::on_error, &out);
  MDS_CHECK(!failed, "tokenizer: cannot decode: ", out.error);
  return std::move(out.text);
}

int32_t Tokenizer::vocab_size() const {
  MDS_ASSERT(sp_);
  return spm().piece_size(sp_.get());
}

std::string Tokenizer::piece(int32_t id) const {
  MDS_ASSERT(sp_);
  const int32_t n = vocab_size();
  MDS_CHECK(id >= 0 && id < n, "tokenizer: no piece with id ", id, " (the vocabulary has ", n, ")");
  std::size_t size = 0;
  const char* data = spm().piece(sp_.get(), id, &size);
  return std::string(data, size);
}

std::vector<uint8_t> Tokenizer::blank_ids() const {
  std::vector<uint8_t> blank(static_cast<std::size_t>(vocab_size()));
  for (int32_t id = 0; id < vocab_size(); ++id) {
    const std::string text = decode({id});
    blank[static_cast<std::size_t>(id)] =
        std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c) != 0; });
  }
  return blank;
}

std::string Tokenizer::serialized() const {
  MDS_ASSERT(sp_);
  std::string bytes;
  spm().serialized(sp_.get(), &append_bytes, &bytes);
  return bytes;
}

std::string Tokenizer::fingerprint() const {
  const std::string bytes = serialized();
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 offset basis
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;  // FNV-1a 64 prime
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace mds::data
