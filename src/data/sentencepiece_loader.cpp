// Loading the SentencePiece module, and the special-token check every tokenizer passes.
#include "data/sentencepiece_loader.h"

#include <dlfcn.h>

#include <cstdlib>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"

namespace mds::data::detail {

const char* const kSpecialPieces[SpecialTokens::count] = {"<pad>", "<unk>", "<s>", "</s>", "<sep>", "<mask>"};

namespace {

constexpr char kModuleName[] = "libmds_sentencepiece.so";

std::string directory_of_executable() {
  try {
    return fs::parent_path(fs::canonical("/proc/self/exe"));
  } catch (const Error&) {
    return "";
  }
}

}  // namespace

const mds_spm_api& spm() {
  static const mds_spm_api* api = [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("MDS_SENTENCEPIECE_MODULE"); env && *env)
      candidates.push_back(env);
    const std::string exe_dir = directory_of_executable();
    if (!exe_dir.empty()) {
      candidates.push_back(exe_dir + "/" + kModuleName);
      candidates.push_back(exe_dir + "/../lib/moe-diffuseq/" + kModuleName);
    }
#ifdef MDS_SENTENCEPIECE_MODULE
    candidates.push_back(MDS_SENTENCEPIECE_MODULE);
#endif
    std::string tried;
    for (const std::string& path : candidates) {
      if (!fs::exists(path)) {
        tried += str_cat("\n  ", path, ": not found");
        continue;
      }
      // DEEPBIND only where another protobuf is already visible (Debian's LibTorch loads the system
      // one): SentencePiece must then bind to its own. Elsewhere (PyTorch's LibTorch keeps its protobuf
      // hidden) a plain local load is safer: DEEPBIND also splits the C++ runtime's globals (std::cerr)
      // between the program and the module.
      const bool clash = dlsym(RTLD_DEFAULT, "_ZN6google8protobuf8internal13VerifyVersionEiiPKc") != nullptr;
#ifdef MDS_ADDRESS_SANITIZER
      // AddressSanitizer ends the process on a DEEPBIND load; without it SentencePiece would run on
      // the other protobuf. Say so (scripts/sanitize leaves these tests out).
      MDS_CHECK(!clash, path, ": SentencePiece cannot be loaded under AddressSanitizer beside a LibTorch that "
                "exposes protobuf (it needs RTLD_DEEPBIND, which the sanitizer refuses)");
#endif
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | (clash ? RTLD_DEEPBIND : 0));
      if (!handle) {
        tried += str_cat("\n  ", path, ": ", dlerror());
        continue;
      }
      auto get = reinterpret_cast<mds_spm_get_api_fn>(dlsym(handle, "mds_spm_get_api"));
      const mds_spm_api* found = get ? get() : nullptr;
      if (!found || found->version != MDS_SPM_API_VERSION) {
        tried += str_cat("\n  ", path, ": not a compatible ", kModuleName);
        continue;
      }
      log_debug("SentencePiece module: ", path);
      return found;  // never closed: processors live as long as the program
    }
    fail("cannot load the SentencePiece module ", kModuleName,
         " (set MDS_SENTENCEPIECE_MODULE to its path); tried:", tried);
  }();
  return *api;
}

void check_special_pieces(const Tokenizer& tok, const std::string& origin) {
  const int32_t n = tok.vocab_size();
  for (int32_t id = 0; id < SpecialTokens::count; ++id) {
    const std::string got = id < n ? tok.piece(id) : std::string("(none)");
    MDS_CHECK(got == kSpecialPieces[id], origin, ": not a moe-diffuseq tokenizer: id ", id,
              " is \"", got, "\", expected \"", kSpecialPieces[id], "\"");
  }
}

}  // namespace mds::data::detail
