// Tokenizer: training (unigram, bpe) on multilingual text, special ids, lossless round trips with
// byte fallback, loading from a directory, a file and bytes, and option checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "data/jsonl.h"
#include "data/special_tokens.h"
#include "data/tokenizer.h"
#include "test_util.h"

namespace mds {

using data::SpecialTokens;
using data::Tokenizer;
using data::TokenizerTrainOptions;
using data::json_quote;

namespace {

// Deterministic across platforms, unlike std:: distributions.
struct Lcg {
  uint64_t state;
  uint32_t next(uint32_t n) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33) % n;
  }
};

template <std::size_t N>
const char* pick(Lcg& rng, const char* const (&words)[N]) {
  return words[rng.next(N)];
}

// A few hundred varied sentences in English, French, German, Greek and Chinese, with emoji.
// None of them contains the characters of kUnseen below.
std::vector<std::string> corpus(std::size_t n) {
  static const char* const en_subj[] = {"The old fisherman", "A young teacher", "My neighbour",
                                        "The committee", "Every student", "Our small team",
                                        "The tired doctor", "A curious child"};
  static const char* const en_verb[] = {"repaired", "painted", "described", "forgot", "carried",
                                        "recommended", "discovered", "ignored"};
  static const char* const en_obj[] = {"the wooden boat", "a broken window", "the quarterly report",
                                       "an unusual letter", "the kitchen table", "three red apples",
                                       "the mountain road", "a forgotten song"};
  static const char* const fr[] = {"Le café est très chaud ce matin.",
                                   "Nous avons étudié l'été dernier à Genève.",
                                   "Où est la bibliothèque près de la forêt ?",
                                   "Elle a préféré le thé à la crème brûlée.",
                                   "Les élèves répètent leur leçon à voix haute.",
                                   "Il fait déjà nuit à Québec."};
  static const char* const de[] = {"Die Brücke über den Fluss ist sehr schön.",
                                   "Wir fahren morgen früh nach München.",
                                   "Große Bäume wachsen hinter dem Gebäude.",
                                   "Ich möchte ein Stück Käse, bitte.",
                                   "Die Prüfung war schwierig, aber fair.",
                                   "Fünf Müller öffnen die Tür."};
  static const char* const el[] = {"Καλημέρα, τι κάνεις σήμερα;", "Η θάλασσα είναι ήρεμη.",
                                   "Το βιβλίο είναι στο τραπέζι.",
                                   "Ευχαριστώ πολύ για τη βοήθεια."};
  static const char* const zh[] = {"今天天气很好。", "我们明天去北京。", "这本书非常有意思。",
                                   "请给我一杯茶。", "中文和英文都很重要。", "他在学校学习数学。"};
  static const char* const emoji[] = {"😀", "🎉", "👍", "🚀", "❤️", "🌍"};
  static const char* const tail[] = {"yesterday.", "before lunch.", "without a word.",
                                     "in the rain.", "for the second time.", "again!"};
  Lcg rng{12345};
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) {
    std::string s;
    switch (rng.next(6)) {
      case 0: s = pick(rng, fr); break;
      case 1: s = pick(rng, de); break;
      case 2: s = pick(rng, el); break;
      case 3: s = pick(rng, zh); break;
      default:
        s = std::string(pick(rng, en_subj)) + " " + pick(rng, en_verb) + " " + pick(rng, en_obj) +
            " " + pick(rng, tail);
    }
    if (rng.next(4) == 0) s += std::string(" ") + pick(rng, emoji);
    if (rng.next(3) == 0) s += std::string(" ") + pick(rng, en_subj) + " " + pick(rng, en_verb) +
                               " " + pick(rng, en_obj) + ".";
    out.push_back(s);
  }
  return out;
}

// Writes pairs of corpus sentences as {"src", "trg"} lines; some src span several lines.
std::string write_corpus(const test::TempDir& dir, const std::string& name, std::size_t n) {
  std::vector<std::string> text = corpus(2 * n);
  std::string jsonl;
  for (std::size_t i = 0; i < n; ++i) {
    std::string src = text[2 * i];
    if (i % 7 == 0) src += "\n" + text[(2 * i + 3) % text.size()];
    jsonl += "{\"id\": \"ex" + std::to_string(i) + "\", \"src\": " + json_quote(src) +
             ", \"trg\": " + json_quote(text[2 * i + 1]) + "}\n";
  }
  const std::string path = dir.file(name);
  test::write_file(path, jsonl);
  return path;
}

TokenizerTrainOptions small_options(const std::string& input, const std::string& type) {
  TokenizerTrainOptions o;
  o.inputs = {input};
  o.vocab_size = 500;
  o.model_type = type;
  o.threads = 2;
  o.seed = 7;
  return o;
}

// NFKC already, single spaces: what nmt_nfkc leaves unchanged.
const std::vector<std::string> kRoundTrip = {
    "Le café est très chaud, über alles.",
    "中文 and English together 😀",
    "Καλημέρα κόσμε, the Brücke is schön.",
    "A snowman ☃ and a rare character 龘 never seen in training.",
    "Numbers 12345 and symbols #@%& stay as they are.",
};
const std::string kUnseen = "☃龘";

class TokenizerTypes : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerTypes, TrainsWithSpecialIdsAndRoundTrips) {
  test::TempDir dir;
  for (const std::string& s : corpus(1000)) ASSERT_EQ(s.find("☃"), std::string::npos);
  const std::string input = write_corpus(dir, "train.jsonl", 300);
  Tokenizer tok = Tokenizer::train(small_options(input, GetParam()), dir.file("tok"));

  EXPECT_EQ(tok.vocab_size(), 500);
  const char* expected[] = {"<pad>", "<unk>", "<s>", "</s>", "<sep>", "<mask>"};
  for (int32_t id = 0; id < SpecialTokens::count; ++id) EXPECT_EQ(tok.piece(id), expected[id]);
  EXPECT_FALSE(test::read_file(dir.file("tok/tokenizer.model")).empty());
  const std::string info = test::read_file(dir.file("tok/tokenizer.json"));
  EXPECT_NE(info.find("\"model_type\": \"" + GetParam() + "\""), std::string::npos) << info;
  EXPECT_NE(info.find("\"examples\": 300"), std::string::npos) << info;

  for (const std::string& text : kRoundTrip) {
    const std::vector<int32_t> ids = tok.encode(text);
    ASSERT_FALSE(ids.empty());
    for (int32_t id : ids) {
      EXPECT_NE(id, SpecialTokens::unk) << text;
      EXPECT_GE(id, SpecialTokens::count) << text;
      EXPECT_LT(id, tok.vocab_size()) << text;
    }
    EXPECT_EQ(tok.decode(ids), text);
  }
  // Byte fallback: the unseen characters become byte pieces, never <unk>.
  bool saw_byte_piece = false;
  for (int32_t id : tok.encode(kUnseen)) saw_byte_piece |= tok.piece(id).rfind("<0x", 0) == 0;
  EXPECT_TRUE(saw_byte_piece);
  EXPECT_TRUE(tok.encode("").empty());
  // The special tokens are control symbols: the same text in the data is ordinary text.
  for (int32_t id : tok.encode("a <sep> b <mask> c")) EXPECT_GE(id, SpecialTokens::count);
  EXPECT_EQ(tok.decode(tok.encode("a <sep> b <mask> c")), "a <sep> b <mask> c");
}

INSTANTIATE_TEST_SUITE_P(Types, TokenizerTypes, ::testing::Values("unigram", "bpe"));

class TrainedTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const std::string input = write_corpus(*dir_, "train.jsonl", 300);
    tok_ = new Tokenizer(Tokenizer::train(small_options(input, "unigram"), dir_->file("tok")));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static test::TempDir* dir_;
  static Tokenizer* tok_;
};
test::TempDir* TrainedTokenizer::dir_ = nullptr;
Tokenizer* TrainedTokenizer::tok_ = nullptr;

TEST_F(TrainedTokenizer, DecodeDropsSpecialTokens) {
  const std::string text = "Die Brücke 中文";
  std::vector<int32_t> ids = {SpecialTokens::bos};
  for (int32_t id : tok_->encode(text)) ids.push_back(id);
  ids.insert(ids.begin() + 2, SpecialTokens::sep);
  ids.insert(ids.begin() + 3, SpecialTokens::mask);
  for (int32_t id : {SpecialTokens::eos, SpecialTokens::pad, SpecialTokens::pad}) ids.push_back(id);
  EXPECT_EQ(tok_->decode(ids), text);
  EXPECT_EQ(tok_->decode({SpecialTokens::pad, SpecialTokens::eos}), "");
  EXPECT_THROW(tok_->decode({tok_->vocab_size()}), Error);
  EXPECT_THROW(tok_->decode({-1}), Error);
}

// The ids that alone read as no text: the special tokens, the lone word boundary "▁" (a word the
// vocabulary splits begins with it) and the byte pieces of whitespace (byte fallback), no other piece.
TEST_F(TrainedTokenizer, BlankIdsAreTheSpecialsAndTheLoneWordBoundary) {
  const std::vector<uint8_t> blank = tok_->blank_ids();
  ASSERT_EQ(blank.size(), static_cast<std::size_t>(tok_->vocab_size()));
  for (int32_t id : {SpecialTokens::pad, SpecialTokens::bos, SpecialTokens::eos, SpecialTokens::sep, SpecialTokens::mask})
    EXPECT_EQ(blank[static_cast<std::size_t>(id)], 1) << id;
  int32_t boundary = -1;
  for (int32_t id = SpecialTokens::count; id < tok_->vocab_size(); ++id) {
    const std::string piece = tok_->piece(id);
    const bool is_boundary = piece == "\u2581";
    if (is_boundary) boundary = id;
    const bool space_byte = piece == "<0x09>" || piece == "<0x0A>" || piece == "<0x0B>" || piece == "<0x0C>" ||
                            piece == "<0x0D>" || piece == "<0x20>";
    EXPECT_EQ(blank[static_cast<std::size_t>(id)], is_boundary || space_byte ? 1 : 0) << id << " " << piece;
  }
  ASSERT_GE(boundary, 0) << "no lone \u2581 piece in this vocabulary";
  EXPECT_EQ(tok_->decode({boundary}), "");
}

TEST_F(TrainedTokenizer, LoadsFromDirectoryFileAndBytesIdentically) {
  const Tokenizer from_dir = Tokenizer::load(dir_->file("tok"));
  const Tokenizer from_file = Tokenizer::load(dir_->file("tok/tokenizer.model"));
  const Tokenizer from_bytes = Tokenizer::from_serialized(tok_->serialized());
  for (const std::string& text : kRoundTrip) {
    const std::vector<int32_t> ids = tok_->encode(text);
    EXPECT_EQ(from_dir.encode(text), ids);
    EXPECT_EQ(from_file.encode(text), ids);
    EXPECT_EQ(from_bytes.encode(text), ids);
  }
  EXPECT_EQ(from_dir.serialized(), tok_->serialized());
  EXPECT_EQ(test::read_file(dir_->file("tok/tokenizer.model")), tok_->serialized());
}

TEST_F(TrainedTokenizer, FingerprintIsStableHex) {
  const std::string fp = tok_->fingerprint();
  ASSERT_EQ(fp.size(), 16u);
  EXPECT_EQ(fp.find_first_not_of("0123456789abcdef"), std::string::npos) << fp;
  EXPECT_EQ(fp, tok_->fingerprint());
  EXPECT_EQ(Tokenizer::load(dir_->file("tok")).fingerprint(), fp);
  EXPECT_NE(fp, "cbf29ce484222325");  // the FNV-1a of nothing
}

TEST_F(TrainedTokenizer, SameOptionsGiveTheSameModel) {
  test::TempDir other;
  TokenizerTrainOptions o = small_options(dir_->file("train.jsonl"), "unigram");
  EXPECT_EQ(Tokenizer::train(o, other.file("tok")).fingerprint(), tok_->fingerprint());
}

TEST_F(TrainedTokenizer, LoadErrorsNameThePath) {
  test::TempDir dir;
  try {
    Tokenizer::load(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("tokenizer.model")), std::string::npos)
        << e.what();
  }
  test::write_file(dir.file("bad.model"), "this is not a model");
  try {
    Tokenizer::load(dir.file("bad.model"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("bad.model")), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::from_serialized("garbage"), Error);
}

TEST(TokenizerOptions, RejectsBadVocabSizeAndModelType) {
  test::TempDir dir;
  const std::string input = write_corpus(dir, "train.jsonl", 20);
  TokenizerTrainOptions o = small_options(input, "unigram");
  o.vocab_size = 100;
  try {
    Tokenizer::train(o, dir.file("tok"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--vocab-size"), std::string::npos) << e.what();
  }
  o.vocab_size = 500;
  o.model_type = "word";
  try {
    Tokenizer::train(o, dir.file("tok"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--model-type"), std::string::npos) << e.what();
  }
  o.model_type = "unigram";
  o.inputs = {dir.file("missing.jsonl")};
  EXPECT_THROW(Tokenizer::train(o, dir.file("tok")), Error);
}

TEST(TokenizerOptions, VocabTooLargeForTheTextIsAnError) {
  test::TempDir dir;
  const std::string input = write_corpus(dir, "train.jsonl", 20);
  TokenizerTrainOptions o = small_options(input, "unigram");
  o.vocab_size = 20000;
  try {
    Tokenizer::train(o, dir.file("tok"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--vocab-size"), std::string::npos) << e.what();
  }
}

// A vocabulary smaller than the characters the text needs (800 CJK characters, 500 pieces) has the
// opposite remedy: the message says to raise the size.
TEST(TokenizerOptions, VocabSmallerThanTheCharactersIsAnError) {
  test::TempDir dir;
  std::string text;
  for (int line = 0; line < 40; ++line) {
    std::string src;
    for (int c = 0; c < 20; ++c) {
      const unsigned cp = 0x4E00u + static_cast<unsigned>(line * 20 + c);  // 3 bytes of UTF-8 each
      src += static_cast<char>(0xE0 | (cp >> 12));
      src += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      src += static_cast<char>(0x80 | (cp & 0x3F));
    }
    text += "{\"src\": \"" + src + "\", \"trg\": \"" + src + "\"}\n";
  }
  test::write_file(dir.file("cjk.jsonl"), text);
  TokenizerTrainOptions o = small_options(dir.file("cjk.jsonl"), "unigram");
  o.character_coverage = 1.0;
  const std::string e = test::error_of([&] { Tokenizer::train(o, dir.file("tok")); });
  EXPECT_NE(e.find("raise --vocab-size"), std::string::npos) << e;
}

TEST(TokenizerOptions, BadJsonlLineIsReportedWithItsLine) {
  test::TempDir dir;
  const std::string input = write_corpus(dir, "train.jsonl", 50);
  test::write_file(input, test::read_file(input) + "{\"src\": \"ok\", \"trg\": 5}\n");
  try {
    Tokenizer::train(small_options(input, "unigram"), dir.file("tok"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.jsonl:51"), std::string::npos) << e.what();
  }
}

TEST(TokenizerOptions, EmptyInputIsAnError) {
  test::TempDir dir;
  test::write_file(dir.file("empty.jsonl"), "\n\n");
  EXPECT_THROW(Tokenizer::train(small_options(dir.file("empty.jsonl"), "unigram"), dir.file("t")),
               Error);
}

TEST(TokenizerOptions, VeryLongLinesAreCutForTraining) {
  test::TempDir dir;
  std::string jsonl;
  std::vector<std::string> text = corpus(400);
  for (std::size_t i = 0; i < 100; ++i) {
    std::string src;
    // Over SentencePiece's 4192-byte limit: with spaces, and Chinese without any.
    if (i % 10 == 0)
      for (int k = 0; k < 60; ++k) src += text[(i + k) % text.size()] + " ";
    else if (i % 10 == 1)
      for (int k = 0; k < 400; ++k) src += "今天天气很好";
    else
      src = text[2 * i];
    jsonl += "{\"src\": " + json_quote(src) + ", \"trg\": " + json_quote(text[2 * i + 1]) + "}\n";
  }
  test::write_file(dir.file("long.jsonl"), jsonl);
  Tokenizer tok = Tokenizer::train(small_options(dir.file("long.jsonl"), "bpe"), dir.file("tok"));
  std::string long_text;
  for (int k = 0; k < 400; ++k) long_text += "今天天气很好";
  EXPECT_EQ(tok.decode(tok.encode(long_text)), long_text);
  // Training saw the cut pieces of the long Chinese lines, so it merged their characters.
  EXPECT_LT(tok.encode(long_text).size(), long_text.size() / 3);
}

// SentencePiece logs through std::cerr from inside its module; with debug logging on, that must
// work in a program that uses std::cerr itself (which this test does, to hold a copy of it).
TEST(TokenizerOptions, SentencePieceLogsAtDebugLevel) {
  std::cerr << std::flush;
  test::TempDir dir;
  const std::string input = write_corpus(dir, "train.jsonl", 50);
  const LogLevel before = log_level();
  set_log_level(LogLevel::debug);
  ::testing::internal::CaptureStderr();
  EXPECT_NO_THROW(Tokenizer::train(small_options(input, "bpe"), dir.file("tok")));
  const std::string logged = ::testing::internal::GetCapturedStderr();
  set_log_level(before);
  EXPECT_NE(logged.find("trainer_interface"), std::string::npos) << logged.substr(0, 2000);
}

}  // namespace
}  // namespace mds
