// libmds_sentencepiece.so: SentencePiece behind the C interface of module_api.h (why: see there).
// Built on its own and never linked into a program; data/tokenizer.cpp opens it.
#include "data/sentencepiece/module_api.h"

#include <sentencepiece_processor.h>  // SentencePieceProcessor, SetRandomGeneratorSeed
#include <sentencepiece_trainer.h>    // SentencePieceTrainer, SentenceIterator

#include <dlfcn.h>

#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using sentencepiece::SentencePieceProcessor;
namespace util = sentencepiece::util;

void report(mds_spm_bytes_fn fn, void* ctx, const std::string& text) {
  if (fn) fn(ctx, text.data(), text.size());
}

const SentencePieceProcessor* cast(const void* p) {
  return static_cast<const SentencePieceProcessor*>(p);
}

// Pulls training sentences from the caller.
class CallbackSentences : public sentencepiece::SentenceIterator {
 public:
  CallbackSentences(mds_spm_next_fn next, void* ctx) : next_(next), ctx_(ctx) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    if (done_) return;
    const char* data = nullptr;
    size_t size = 0;
    const int got = next_(ctx_, &data, &size);
    if (got == 1) {
      value_.assign(data, size);
    } else {
      done_ = true;
      failed_ = got < 0;
    }
  }
  const std::string& value() const override { return value_; }
  util::Status status() const override {
    if (!failed_) return util::Status();
    return util::Status(util::StatusCode::kCancelled, "reading the training text failed");
  }

 private:
  mds_spm_next_fn next_;
  void* ctx_;
  std::string value_;
  bool done_ = false, failed_ = false;
};

void* load(const char* model, size_t size, mds_spm_bytes_fn on_error, void* ctx) {
  try {
    auto* sp = new SentencePieceProcessor();
    const util::Status status = sp->LoadFromSerializedProto(std::string_view(model, size));
    if (status.ok()) return sp;
    delete sp;
    report(on_error, ctx, status.message());
  } catch (const std::exception& e) {
    report(on_error, ctx, e.what());
  }
  return nullptr;
}

void release(void* processor) { delete static_cast<SentencePieceProcessor*>(processor); }

int encode(const void* processor, const char* text, size_t size, mds_spm_ids_fn on_ids,
           mds_spm_bytes_fn on_error, void* ctx) {
  try {
    std::vector<int> ids;
    const util::Status status = cast(processor)->Encode(std::string_view(text, size), &ids);
    if (!status.ok()) {
      report(on_error, ctx, status.message());
      return 1;
    }
    on_ids(ctx, ids.data(), ids.size());
    return 0;
  } catch (const std::exception& e) {
    report(on_error, ctx, e.what());
    return 1;
  }
}

int decode(const void* processor, const int* ids, size_t count, mds_spm_bytes_fn on_text,
           mds_spm_bytes_fn on_error, void* ctx) {
  try {
    std::string text;
    const util::Status status = cast(processor)->Decode(std::vector<int>(ids, ids + count), &text);
    if (!status.ok()) {
      report(on_error, ctx, status.message());
      return 1;
    }
    report(on_text, ctx, text);
    return 0;
  } catch (const std::exception& e) {
    report(on_error, ctx, e.what());
    return 1;
  }
}

int piece_size(const void* processor) { return cast(processor)->GetPieceSize(); }

const char* piece(const void* processor, int id, size_t* size) {
  const std::string& p = cast(processor)->IdToPiece(id);
  *size = p.size();
  return p.data();
}

void serialized(const void* processor, mds_spm_bytes_fn on_bytes, void* ctx) {
  report(on_bytes, ctx, cast(processor)->serialized_model_proto());
}

int train(const char* const* keys, const char* const* values, size_t options, unsigned seed,
          mds_spm_next_fn next, void* next_ctx, mds_spm_bytes_fn on_model,
          mds_spm_bytes_fn on_error, void* ctx) {
  try {
    std::unordered_map<std::string, std::string> args;
    for (size_t i = 0; i < options; ++i) args[keys[i]] = values[i];
    sentencepiece::SetRandomGeneratorSeed(seed);
    CallbackSentences sentences(next, next_ctx);
    std::string model;
    const util::Status status =
        sentencepiece::SentencePieceTrainer::Train(args, &sentences, &model);
    if (!status.ok()) {
      report(on_error, ctx, status.message());
      return 1;
    }
    report(on_model, ctx, model);
    return 0;
  } catch (const std::exception& e) {
    report(on_error, ctx, e.what());
    return 1;
  }
}

// Under RTLD_DEEPBIND, SentencePiece's std::cerr (its logging) is libstdc++'s own object. But a
// program that uses std::cout/cerr/cin holds copies of them (copy relocations), and libstdc++
// constructs only those, leaving its own as raw memory: logging would crash. So ours are built as
// twins of the program's (same buffer, flags and tie), as libstdc++ itself builds them.
template <typename Stream>
void twin_stream(void* main_program, Stream& ours, const char* symbol) {
  // Not RTLD_DEFAULT: from a DEEPBIND object it would find ours again.
  auto* program = static_cast<Stream*>(dlsym(main_program, symbol));
  if (!program || program == &ours) return;  // no copy: ours is the program's
  Stream* twin = new (&ours) Stream(program->rdbuf());
  twin->flags(program->flags());
  twin->tie(program->tie());
}

void twin_standard_streams() {
  void* main_program = dlopen(nullptr, RTLD_NOW);
  if (!main_program) return;
  twin_stream(main_program, std::cout, "_ZSt4cout");
  twin_stream(main_program, std::cerr, "_ZSt4cerr");
  twin_stream(main_program, std::clog, "_ZSt4clog");
  twin_stream(main_program, std::cin, "_ZSt3cin");
}

const mds_spm_api kApi = {MDS_SPM_API_VERSION, load,       release,    encode, decode,
                          piece_size,          piece,      serialized, train};

}  // namespace

extern "C" __attribute__((visibility("default"))) const mds_spm_api* mds_spm_get_api(void) {
  static const bool twinned = (twin_standard_streams(), true);
  (void)twinned;
  return &kApi;
}
