// The C interface of libmds_sentencepiece.so, the module that holds SentencePiece.
//
// Why a module: Debian's libsentencepiece.so.0 carries its own protobuf 3.14 and exports all of its
// symbols, and Debian's LibTorch loads libprotobuf.so.32 (3.21). Linked into one program they
// interpose each other and the program crashes before main(). So nothing links SentencePiece but
// this module, which the tokenizer opens with dlopen(RTLD_LOCAL | RTLD_DEEPBIND): SentencePiece
// then binds to its own protobuf and stays invisible to LibTorch's.
//
// Only C types cross the boundary; results come back through callbacks, so no memory allocated on
// one side is freed on the other. No function throws.
#pragma once

#include <stddef.h>

#define MDS_SPM_API_VERSION 1

extern "C" {

// Receives bytes (text, a piece, a model, an error message); `data` is valid during the call only.
typedef void (*mds_spm_bytes_fn)(void* ctx, const char* data, size_t size);
// Receives token ids; valid during the call only.
typedef void (*mds_spm_ids_fn)(void* ctx, const int* ids, size_t count);
// Yields the next training sentence: 1 with *data/*size set (valid until the next call),
// 0 at the end, -1 on an error (the caller keeps the reason).
typedef int (*mds_spm_next_fn)(void* ctx, const char** data, size_t* size);

struct mds_spm_api {
  int version;  // MDS_SPM_API_VERSION
  // A sentencepiece::SentencePieceProcessor from a serialized model; null after on_error.
  // Release it with `delete` (its destructor is virtual) or with release().
  void* (*load)(const char* model, size_t size, mds_spm_bytes_fn on_error, void* ctx);
  void (*release)(void* processor);
  // 0 on success; otherwise on_error was called.
  int (*encode)(const void* processor, const char* text, size_t size, mds_spm_ids_fn on_ids,
                mds_spm_bytes_fn on_error, void* ctx);
  int (*decode)(const void* processor, const int* ids, size_t count, mds_spm_bytes_fn on_text,
                mds_spm_bytes_fn on_error, void* ctx);
  int (*piece_size)(const void* processor);
  // The piece of 0 <= id < piece_size(), owned by the processor.
  const char* (*piece)(const void* processor, int id, size_t* size);
  void (*serialized)(const void* processor, mds_spm_bytes_fn on_bytes, void* ctx);
  // Trains with SentencePiece's key=value options on the sentences `next` yields; the random
  // seed is set first. 0 on success (on_model got the model); otherwise on_error was called.
  int (*train)(const char* const* keys, const char* const* values, size_t options, unsigned seed,
               mds_spm_next_fn next, void* next_ctx, mds_spm_bytes_fn on_model,
               mds_spm_bytes_fn on_error, void* ctx);
};

// The module's only exported symbol.
const mds_spm_api* mds_spm_get_api(void);
typedef const mds_spm_api* (*mds_spm_get_api_fn)(void);

}  // extern "C"
