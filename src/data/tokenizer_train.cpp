// Training a SentencePiece tokenizer on the src and trg text of jsonl files.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/strings.h"
#include "data/jsonl.h"
#include "data/sentencepiece_loader.h"
#include "data/tokenizer.h"

namespace mds::data {
namespace {

using detail::spm;
using detail::SpmResults;

constexpr int kMinVocabSize = 300;            // 256 byte pieces + 6 specials + some characters
constexpr std::size_t kMaxPieceBytes = 2000;  // long lines are cut into pieces of at most this
constexpr int kMaxSentenceBytes = 8192;       // SentencePiece drops longer ones; ours never are

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

}  // namespace

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
  SpmResults out;
  const int failed = api.train(keys.data(), values.data(), keys.size(), options.seed,
                               &JsonlSentences::pull, &sentences, &SpmResults::on_text,
                               &SpmResults::on_error, &out);
  if (!sentences.error().empty()) throw Error(sentences.error());
  MDS_CHECK(sentences.sentences() > 0, "tokenizer train: the inputs hold no text (",
            sentences.examples(), " examples)");
  if (failed) {
    std::string message = out.error;
    // Drop SentencePiece's "./src/file.cc(660) [condition] " prefix: it means nothing to users.
    if (message.rfind("./src/", 0) == 0 && message.find("] ") != std::string::npos)
      message = message.substr(message.find("] ") + 2);
    // Two failures share the words: a vocabulary too large for the text, or one smaller than the
    // characters the text needs. Each has its own remedy.
    if (message.find("required_chars") != std::string::npos)
      message += " (raise --vocab-size above the number of characters, or lower --character-coverage)";
    else if (message.find("Vocabulary size") != std::string::npos)
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

}  // namespace mds::data
