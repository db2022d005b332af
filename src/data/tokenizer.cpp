// SentencePiece behind mds::Tokenizer: training on jsonl src/trg text, loading, encoding, decoding.
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>  // SentencePieceProcessor, SetRandomGeneratorSeed
#include <sentencepiece_trainer.h>    // SentencePieceTrainer, SentenceIterator

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/strings.h"
#include "data/jsonl.h"

namespace fs = std::filesystem;

namespace mds {
namespace {

constexpr int kMinVocabSize = 300;            // 256 byte pieces + 6 specials + some characters
constexpr std::size_t kMaxPieceBytes = 2000;  // long lines are cut into pieces of at most this
constexpr int kMaxSentenceBytes = 8192;       // SentencePiece skips longer sentences; ours never are

const char* const kSpecialPieces[SpecialTokens::count] = {"<pad>", "<unk>", "<s>",
                                                          "</s>",  "<sep>", "<mask>"};

// Feeds SentencePiece the src and trg text of every example of every input, one line of text at a
// time. An error (a bad jsonl line) is kept here and rethrown by the caller, because exceptions
// should not cross SentencePiece's code.
class JsonlSentences : public sentencepiece::SentenceIterator {
 public:
  explicit JsonlSentences(const std::vector<std::string>& inputs) : inputs_(inputs) { advance(); }

  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override {
    if (error_.empty()) return {};
    return {sentencepiece::util::StatusCode::kInvalidArgument, error_};
  }

  const std::string& error() const { return error_; }
  std::size_t sentences() const { return sentences_; }
  std::size_t examples() const { return examples_; }
  std::size_t skipped() const { return skipped_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void advance() {
    if (done_) return;
    try {
      while (!next_piece()) {
        if (!next_example()) {
          done_ = true;
          return;
        }
      }
      ++sentences_;
      bytes_ += value_.size();
    } catch (const std::exception& e) {
      error_ = e.what();
      done_ = true;
    }
  }

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
  bool next_piece() {
    while (pos_ < pending_.size()) {
      std::size_t eol = pending_.find('\n', pos_);
      if (eol == std::string::npos) eol = pending_.size();
      std::size_t end = eol;
      if (end - pos_ > kMaxPieceBytes) {
        std::size_t cut = pending_.rfind(' ', pos_ + kMaxPieceBytes);
        if (cut == std::string::npos || cut <= pos_) {
          cut = pos_ + kMaxPieceBytes;  // no space: back up to the start of a UTF-8 character
          while (cut > pos_ + 1 && (static_cast<unsigned char>(pending_[cut]) & 0xC0) == 0x80) --cut;
        }
        end = cut;
      }
      std::string_view piece = trim(std::string_view(pending_).substr(pos_, end - pos_));
      pos_ = end == eol ? eol + 1 : end;
      if (!piece.empty()) {
        value_.assign(piece);
        return true;
      }
    }
    return false;
  }

  const std::vector<std::string>& inputs_;
  std::size_t file_ = 0;
  std::unique_ptr<JsonlReader> reader_;
  std::string pending_;
  std::size_t pos_ = 0;
  std::string value_;
  std::string error_;
  bool done_ = false;
  std::size_t sentences_ = 0, examples_ = 0, skipped_ = 0, bytes_ = 0;
};

std::string read_whole_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open the tokenizer model");
  std::ostringstream os;
  os << f.rdbuf();
  if (f.bad()) fail(path, ": cannot read the tokenizer model");
  return os.str();
}

// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half a file.
void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = str_cat(path, ".tmp-", getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail(tmp, ": cannot create the file");
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.flush();
    if (!f) fail(tmp, ": cannot write the file");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail(path, ": cannot write the file");
  }
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Throws unless the model has the project's special tokens at ids 0..5.
void check_special_pieces(const sentencepiece::SentencePieceProcessor& sp, const std::string& origin) {
  const int n = sp.GetPieceSize();
  for (int32_t id = 0; id < SpecialTokens::count; ++id) {
    const std::string got = id < n ? sp.IdToPiece(id) : std::string("(none)");
    MDS_CHECK(got == kSpecialPieces[id], origin, ": not a moe-diffuseq tokenizer: id ", id, " is \"",
              got, "\", expected \"", kSpecialPieces[id], "\"");
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

  int threads = options.threads;
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const bool debug = log_level() <= LogLevel::debug;

  std::unordered_map<std::string, std::string> args = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      {"user_defined_symbols", "<sep>,<mask>"},
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
  sentencepiece::SetRandomGeneratorSeed(options.seed);

  log_info("training a ", options.model_type, " tokenizer of ", options.vocab_size, " pieces on ",
           options.inputs.size(), " input(s)");
  const auto start = std::chrono::steady_clock::now();
  JsonlSentences sentences(options.inputs);
  std::string model;
  sentencepiece::util::Status status =
      sentencepiece::SentencePieceTrainer::Train(args, &sentences, &model);
  if (!sentences.error().empty()) throw Error(sentences.error());
  MDS_CHECK(sentences.sentences() > 0, "tokenizer train: the inputs hold no text (",
            sentences.examples(), " examples)");
  if (!status.ok()) {
    std::string message = status.message();
    if (message.find("Vocabulary size is too large") != std::string::npos)
      message += " (lower --vocab-size or give more text)";
    fail("tokenizer training failed: ", message);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  Tokenizer tok = from_serialized(model);
  // user_defined_symbols are placed after the reserved ids; this checks they got 4 and 5.
  check_special_pieces(*tok.sp_, "trained tokenizer");

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  MDS_CHECK(!ec, out_dir, ": cannot create the directory: ", ec.message());
  write_file_atomic(out_dir + "/tokenizer.model", model);

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
  write_file_atomic(out_dir + "/tokenizer.json", info.dump(2) + "\n");
  log_info("tokenizer: ", tok.vocab_size(), " pieces from ", sentences.examples(), " examples (",
           sentences.sentences(), " lines, ", human_bytes(static_cast<double>(sentences.bytes())),
           ") in ", str_cat(static_cast<int64_t>(seconds * 10) / 10.0), " s -> ", out_dir,
           "/tokenizer.model");
  return tok;
}

Tokenizer Tokenizer::load(const std::string& path) {
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "tokenizer.model").string();
  MDS_CHECK(fs::exists(file, ec), file, ": no such file (expected a tokenizer directory or a "
            "tokenizer.model)");
  const std::string bytes = read_whole_file(file);
  Tokenizer tok;
  tok.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  sentencepiece::util::Status status = tok.sp_->LoadFromSerializedProto(bytes);
  MDS_CHECK(status.ok(), file, ": not a SentencePiece model: ", status.message());
  check_special_pieces(*tok.sp_, file);
  return tok;
}

Tokenizer Tokenizer::from_serialized(const std::string& model_proto) {
  Tokenizer tok;
  tok.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  sentencepiece::util::Status status = tok.sp_->LoadFromSerializedProto(model_proto);
  MDS_CHECK(status.ok(), "not a SentencePiece model: ", status.message());
  check_special_pieces(*tok.sp_, "serialized tokenizer");
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  MDS_ASSERT(sp_);
  std::vector<int> ids;
  sentencepiece::util::Status status = sp_->Encode(text, &ids);
  MDS_CHECK(status.ok(), "tokenizer: cannot encode text: ", status.message());
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  MDS_ASSERT(sp_);
  const int n = sp_->GetPieceSize();
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
  std::string text;
  sentencepiece::util::Status status = sp_->Decode(kept, &text);
  MDS_CHECK(status.ok(), "tokenizer: cannot decode: ", status.message());
  return text;
}

int32_t Tokenizer::vocab_size() const {
  MDS_ASSERT(sp_);
  return sp_->GetPieceSize();
}

std::string Tokenizer::piece(int32_t id) const {
  MDS_ASSERT(sp_);
  MDS_CHECK(id >= 0 && id < sp_->GetPieceSize(), "tokenizer: no piece with id ", id,
            " (the vocabulary has ", sp_->GetPieceSize(), ")");
  return sp_->IdToPiece(id);
}

std::string Tokenizer::serialized() const {
  MDS_ASSERT(sp_);
  return sp_->serialized_model_proto();
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
