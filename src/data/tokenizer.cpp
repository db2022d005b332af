// SentencePiece behind mds::Tokenizer: training on jsonl src/trg text, loading, encoding, decoding.
#include "data/tokenizer.h"

// Only for the complete type that the destructor of sp_ deletes (its destructor is virtual, so no
// SentencePiece symbol is linked); every call goes through the module.
#include <sentencepiece_processor.h>

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <utility>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/strings.h"
#include "data/jsonl.h"
#include "data/sentencepiece/module_api.h"

namespace mds {
namespace {

constexpr int kMinVocabSize = 300;            // 256 byte pieces + 6 specials + some characters
constexpr std::size_t kMaxPieceBytes = 2000;  // long lines are cut into pieces of at most this
constexpr int kMaxSentenceBytes = 8192;       // SentencePiece drops longer ones; ours never are
constexpr char kModuleName[] = "libmds_sentencepiece.so";

const char* const kSpecialPieces[SpecialTokens::count] = {"<pad>", "<unk>", "<s>",
                                                          "</s>",  "<sep>", "<mask>"};

// The training text: the src and trg of every example of every input, one line of text at a time.
class JsonlSentences {
 public:
  explicit JsonlSentences(const std::vector<std::string>& inputs) : inputs_(inputs) {}

  // The next sentence, or false at the end. Throws on a bad jsonl line.
  bool next(std::string_view* sentence) {
    while (!next_piece(sentence)) {
      if (!next_example()) return false;
    }
    ++sentences_;
    bytes_ += sentence->size();
    return true;
  }

  // For the module: errors are kept here and rethrown after training, because exceptions must
  // not cross SentencePiece's code.
  static int pull(void* ctx, const char** data, size_t* size) {
    auto* self = static_cast<JsonlSentences*>(ctx);
    try {
      std::string_view s;
      if (!self->next(&s)) return 0;
      *data = s.data();
      *size = s.size();
      return 1;
    } catch (const std::exception& e) {
      self->error_ = e.what();
      return -1;
    }
  }

  const std::string& error() const { return error_; }
  std::size_t sentences() const { return sentences_; }
  std::size_t examples() const { return examples_; }
  std::size_t skipped() const { return skipped_; }
  std::size_t bytes() const { return bytes_; }

 private:
  // Loads the next example's text into pending_ (src and trg); false at the end of the inputs.
  bool next_example() {
    Example ex;
    for (;;) {
      if (!reader_) {
        if (file_ == inputs_.size()) return false;
        reader_ = std::make_unique<JsonlReader>(inputs_[file_++], JsonlOptions{true, true});
      }
      if (reader_->next(ex)) break;
      const JsonlStats& s = reader_->stats();
      skipped_ += s.empty_src + s.empty_trg;
      log_debug("tokenizer train: ", reader_->summary());
      reader_.reset();
    }
    ++examples_;
    pending_ = std::move(ex.src);
    pending_ += '\n';
    pending_ += ex.trg;
    pos_ = 0;
    return true;
  }

  // The next non-blank piece of pending_: a line, cut at spaces (or at a character boundary) so
  // that no piece is longer than kMaxPieceBytes.
  bool next_piece(std::string_view* sentence) {
    while (pos_ < pending_.size()) {
      std::size_t eol = pending_.find('\n', pos_);
      if (eol == std::string::npos) eol = pending_.size();
      std::size_t end = eol;
      if (end - pos_ > kMaxPieceBytes) {
        std::size_t cut = pending_.rfind(' ', pos_ + kMaxPieceBytes);
        if (cut == std::string::npos || cut <= pos_) {
          cut = pos_ + kMaxPieceBytes;  // no space: back up to the start of a UTF-8 character
          while (cut > pos_ + 1 && (static_cast<unsigned char>(pending_[cut]) & 0xC0) == 0x80)
            --cut;
        }
        end = cut;
      }
      *sentence = trim(std::string_view(pending_).substr(pos_, end - pos_));
      pos_ = end == eol ? eol + 1 : end;
      if (!sentence->empty()) return true;
    }
    return false;
  }

  const std::vector<std::string>& inputs_;
  std::size_t file_ = 0;
  std::unique_ptr<JsonlReader> reader_;
  std::string pending_;
  std::size_t pos_ = 0;
  std::string error_;
  std::size_t sentences_ = 0, examples_ = 0, skipped_ = 0, bytes_ = 0;
};

// ------------------------------------------------------------------------- the module

std::string directory_of_executable() {
  try {
    return fs::parent_path(fs::canonical("/proc/self/exe"));
  } catch (const Error&) {
    return "";
  }
}

// Opens libmds_sentencepiece.so once (see data/sentencepiece/module_api.h for why it is a
// module). Looked for in $MDS_SENTENCEPIECE_MODULE, beside the executable, in ../lib/moe-diffuseq
// from it (installed), then where the build put it.
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

void append_bytes(void* ctx, const char* data, size_t size) {
  static_cast<std::string*>(ctx)->append(data, size);
}

// Collects the outputs of one module call.
struct Results {
  std::vector<int32_t> ids;
  std::string text, error;
  static void on_ids(void* ctx, const int* ids, size_t n) {
    static_cast<Results*>(ctx)->ids.assign(ids, ids + n);
  }
  static void on_text(void* ctx, const char* data, size_t n) {
    static_cast<Results*>(ctx)->text.append(data, n);
  }
  static void on_error(void* ctx, const char* data, size_t n) {
    static_cast<Results*>(ctx)->error.append(data, n);
  }
};

// Throws unless the model has the project's special tokens at ids 0..5.
void check_special_pieces(const Tokenizer& tok, const std::string& origin) {
  const int32_t n = tok.vocab_size();
  for (int32_t id = 0; id < SpecialTokens::count; ++id) {
    const std::string got = id < n ? tok.piece(id) : std::string("(none)");
    MDS_CHECK(got == kSpecialPieces[id], origin, ": not a moe-diffuseq tokenizer: id ", id,
              " is \"", got, "\", expected \"", kSpecialPieces[id], "\"");
  }
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::train(const TokenizerTrainOptions& options, const std::string& out_dir) {
  MDS_CHECK(!options.inputs.empty(), "tokenizer train: no --input given");
  MDS_CHECK(options.vocab_size >= kMinVocabSize, "--vocab-size ", options.vocab_size,
            " is too small: it must be at least ", kMinVocabSize,
            " (256 byte pieces and 6 special tokens come first)");
  MDS_CHECK(options.model_type == "unigram" || options.model_type == "bpe", "--model-type \"",
            options.model_type, "\" is not supported: use unigram or bpe");
  MDS_CHECK(options.character_coverage > 0.0 && options.character_coverage <= 1.0,
            "--character-coverage ", options.character_coverage, " must be in (0, 1]");
  MDS_CHECK(options.max_sentences > 0, "--max-sentences must be positive");
  MDS_CHECK(options.threads >= 0, "--threads must not be negative");
  for (const std::string& input : options.inputs)
    MDS_CHECK(input == "-" || fs::exists(input), input, ": no such file");
  const mds_spm_api& api = spm();

  int threads = options.threads;
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const bool debug = log_level() <= LogLevel::debug;
  const std::vector<std::pair<std::string, std::string>> args = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      // Control symbols: they hold ids 4 and 5 but never match text, so a literal "<sep>" in the
      // data stays text.
      {"control_symbols", "<sep>,<mask>"},
      {"byte_fallback", "true"},
      {"character_coverage", str_cat(options.character_coverage)},
      {"normalization_rule_name", options.normalization},
      {"input_sentence_size", std::to_string(options.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", std::to_string(kMaxSentenceBytes)},
      {"num_threads", std::to_string(threads)},
      // 0 = INFO, 1 = WARNING: SentencePiece's own progress is only wanted when debugging.
      {"minloglevel", debug ? "0" : "1"},
  };
  std::vector<const char*> keys, values;
  for (const auto& [key, value] : args) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }

  log_info("training a ", options.model_type, " tokenizer of ", options.vocab_size, " pieces on ",
           options.inputs.size(), " input(s)");
  const auto start = std::chrono::steady_clock::now();
  JsonlSentences sentences(options.inputs);
  Results out;
  const int failed = api.train(keys.data(), values.data(), keys.size(), options.seed,
                               &JsonlSentences::pull, &sentences, &Results::on_text,
                               &Results::on_error, &out);
  if (!sentences.error().empty()) throw Error(sentences.error());
  MDS_CHECK(sentences.sentences() > 0, "tokenizer train: the inputs hold no text (",
            sentences.examples(), " examples)");
  if (failed) {
    std::string message = out.error;
    // Drop SentencePiece's "./src/file.cc(660) [condition] " prefix: it means nothing to users.
    if (message.rfind("./src/", 0) == 0 && message.find("] ") != std::string::npos)
      message = message.substr(message.find("] ") + 2);
    if (message.find("Vocabulary size") != std::string::npos)
      message += " (lower --vocab-size or give more text)";
    fail("tokenizer training failed: ", message);
  }
  const std::string& model = out.text;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // control_symbols are placed after the reserved ids; from_serialized checks that they got
  // 4 and 5.
  Tokenizer tok = from_serialized(model);

  fs::create_directories(out_dir);
  fs::write_file_atomic(out_dir + "/tokenizer.model", model);

  nlohmann::json info = {
      {"format", "moe-diffuseq-tokenizer"},
      {"version", 1},
      {"created", utc_now()},
      {"vocab_size", tok.vocab_size()},
      {"fingerprint", tok.fingerprint()},
      {"options",
       {{"inputs", options.inputs},
        {"model_type", options.model_type},
        {"vocab_size", options.vocab_size},
        {"character_coverage", options.character_coverage},
        {"normalization", options.normalization},
        {"max_sentences", options.max_sentences},
        {"threads", threads},
        {"seed", options.seed},
        {"byte_fallback", true},
        {"special_tokens", {"<pad>", "<unk>", "<s>", "</s>", "<sep>", "<mask>"}}}},
      {"counts",
       {{"examples", sentences.examples()},
        {"skipped_examples", sentences.skipped()},
        {"sentences", sentences.sentences()},
        {"bytes", sentences.bytes()}}},
      {"seconds", seconds},
  };
  fs::write_file_atomic(out_dir + "/tokenizer.json", info.dump(2) + "\n");
  log_info("tokenizer ", tok.fingerprint(), ": ", tok.vocab_size(), " pieces from ",
           sentences.examples(), " examples (", sentences.sentences(), " lines, ",
           human_bytes(static_cast<double>(sentences.bytes())), ") in ",
           static_cast<int64_t>(seconds * 10) / 10.0, " s -> ", out_dir, "/tokenizer.model");
  return tok;
}

Tokenizer Tokenizer::load(const std::string& path) {
  std::string file = path;
  if (fs::is_directory(path)) file = fs::join(path, "tokenizer.model");
  MDS_CHECK(fs::exists(file), file, ": no such file (expected a tokenizer directory or a "
            "tokenizer.model)");
  const std::string bytes = fs::read_file(file);
  Results out;
  void* sp = spm().load(bytes.data(), bytes.size(), &Results::on_error, &out);
  MDS_CHECK(sp, file, ": not a SentencePiece model: ", out.error);
  Tokenizer tok;
  tok.sp_.reset(static_cast<sentencepiece::SentencePieceProcessor*>(sp));
  check_special_pieces(tok, file);
  return tok;
}

Tokenizer Tokenizer::from_serialized(const std::string& model_proto) {
  Results out;
  void* sp = spm().load(model_proto.data(), model_proto.size(), &Results::on_error, &out);
  MDS_CHECK(sp, "not a SentencePiece model: ", out.error);
  Tokenizer tok;
  tok.sp_.reset(static_cast<sentencepiece::SentencePieceProcessor*>(sp));
  check_special_pieces(tok, "serialized tokenizer");
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  MDS_ASSERT(sp_);
  Results out;
  const int failed = spm().encode(sp_.get(), text.data(), text.size(), &Results::on_ids,
                                  &Results::on_error, &out);
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
  Results out;
  const int failed = spm().decode(sp_.get(), kept.data(), kept.size(), &Results::on_text,
                                  &Results::on_error, &out);
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

}  // namespace mds
