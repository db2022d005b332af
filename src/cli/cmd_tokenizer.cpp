// `moe-diffuseq tokenizer train|encode|decode`: train a SentencePiece tokenizer on jsonl text, and
// run it over text or ids from the command line or standard input.
#include <CLI/CLI.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/strings.h"
#include "data/tokenizer.h"

namespace mds::cli {

using data::Tokenizer;
using data::TokenizerTrainOptions;

namespace {

struct EncodeOptions {
  std::string tokenizer;
  std::string text;
  bool pieces = false;
};

std::string format_encoding(const Tokenizer& tok, const std::vector<int32_t>& ids, bool pieces) {
  std::string line;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += pieces ? tok.piece(ids[i]) : std::to_string(ids[i]);
  }
  line += '\n';
  return line;
}

void run_encode(const EncodeOptions& o, bool has_text) {
  const Tokenizer tok = Tokenizer::load(o.tokenizer);
  const auto start = std::chrono::steady_clock::now();
  std::size_t lines = 0, tokens = 0;
  auto emit = [&](const std::string& text) {
    const std::vector<int32_t> ids = tok.encode(text);
    std::fputs(format_encoding(tok, ids, o.pieces).c_str(), stdout);
    ++lines;
    tokens += ids.size();
  };
  if (has_text) {
    emit(o.text);
  } else {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      emit(line);
    }
  }
  std::fflush(stdout);
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log_info("encoded ", lines, " line(s) into ", tokens, " tokens in ",
           static_cast<int64_t>(s * 1000), " ms");
}

// Parses "12 7 3" into ids; `where` names the line in errors.
std::vector<int32_t> parse_ids(const std::string& line, const std::string& where) {
  std::vector<int32_t> ids;
  for (const std::string& word : split(line, ' ')) {
    std::string_view w = trim(word);
    if (w.empty()) continue;
    const std::string s(w);
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(s.c_str(), &end, 10);
    MDS_CHECK(end != s.c_str() && *end == '\0' && errno == 0 && v >= 0 && v <= INT32_MAX, where,
              ": \"", s, "\" is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

void run_decode(const std::string& tokenizer) {
  const Tokenizer tok = Tokenizer::load(tokenizer);
  std::size_t lines = 0, tokens = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    ++lines;
    for (char& c : line)
      if (c == '\t' || c == '\r') c = ' ';
    const std::string where = str_cat("stdin:", lines);
    const std::vector<int32_t> ids = parse_ids(line, where);
    tokens += ids.size();
    std::string text;
    try {
      text = tok.decode(ids);
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
    text += '\n';
    std::fputs(text.c_str(), stdout);
  }
  std::fflush(stdout);
  log_info("decoded ", lines, " line(s) of ", tokens, " ids");
}

}  // namespace

void add_tokenizer_command(CLI::App& app) {
  auto* tokenizer = app.add_subcommand("tokenizer", "train and run SentencePiece tokenizers");
  tokenizer->require_subcommand(1);

  auto train_options = std::make_shared<TokenizerTrainOptions>();
  auto out_dir = std::make_shared<std::string>();
  auto* train = tokenizer->add_subcommand(
      "train", "train a tokenizer on the src and trg text of jsonl files");
  train->add_option("--input", train_options->inputs, "jsonl file (repeatable; .gz and .zst too)")
      ->required();
  train->add_option("--vocab-size", train_options->vocab_size, "number of pieces (>= 300)")
      ->required();
  train->add_option("--out", *out_dir, "directory for tokenizer.model and tokenizer.json")
      ->required();
  train->add_option("--model-type", train_options->model_type, "unigram or bpe")
      ->capture_default_str();
  train->add_option("--character-coverage", train_options->character_coverage,
                    "share of characters given their own piece; the rest uses byte fallback")
      ->capture_default_str();
  train->add_option("--normalization", train_options->normalization,
                    "SentencePiece normalization rule: nmt_nfkc, nfkc, nmt_nfkc_cf, identity")
      ->capture_default_str();
  train->add_option("--max-sentences", train_options->max_sentences,
                    "lines sampled for training (SentencePiece's input_sentence_size)")
      ->capture_default_str();
  train->add_option("--threads", train_options->threads, "training threads (0 = all cores)")
      ->capture_default_str();
  train->add_option("--seed", train_options->seed, "random seed")->capture_default_str();
  // Tokenizer::train logs the summary.
  train->callback([train_options, out_dir] { Tokenizer::train(*train_options, *out_dir); });

  auto encode_options = std::make_shared<EncodeOptions>();
  auto* encode = tokenizer->add_subcommand(
      "encode", "print the ids of --text, or of each line of standard input");
  encode->add_option("--tokenizer", encode_options->tokenizer,
                     "tokenizer directory or tokenizer.model")
      ->required();
  auto* text_option = encode->add_option("--text", encode_options->text, "text to encode");
  encode->add_flag("--pieces", encode_options->pieces, "print pieces instead of ids");
  encode->callback([encode_options, text_option] {
    run_encode(*encode_options, text_option->count() > 0);
  });

  auto decode_tokenizer = std::make_shared<std::string>();
  auto* decode = tokenizer->add_subcommand(
      "decode", "turn each line of space-separated ids on standard input back into text");
  decode->add_option("--tokenizer", *decode_tokenizer, "tokenizer directory or tokenizer.model")
      ->required();
  decode->callback([decode_tokenizer] { run_decode(*decode_tokenizer); });
}

}  // namespace mds::cli
