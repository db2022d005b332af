// Prepared data: jsonl -> tokens.bin/index.bin/ids.txt/meta.json and back through the mapped
// reader, skipped examples, atomic replacement, and errors on corrupted files.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "data/jsonl.h"
#include "data/prepared.h"
#include "data/tokenizer.h"
#include "test_util.h"

namespace mds {

using data::PrepareStats;
using data::PreparedDataset;
using data::TokenSpan;
using data::Tokenizer;
using data::TokenizerTrainOptions;
using data::json_quote;
using data::prepare_dataset;

namespace {

std::vector<int32_t> to_vector(TokenSpan span) { return {span.begin(), span.end()}; }

std::string jsonl_line(const std::string& id, const std::string& src, const std::string& trg) {
  std::string line = "{";
  if (!id.empty()) line += "\"id\": " + id + ", ";
  return line + "\"src\": " + json_quote(src) + ", \"trg\": " + json_quote(trg) + "}\n";
}

class Prepared : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tok_dir_ = new test::TempDir();
    const char* words[] = {"the",    "quick", "brown", "fox",    "jumps",  "over",   "lazy",
                           "dog",    "café",  "über",  "naïve",  "中文",   "数据",   "Ελλάδα",
                           "river",  "stone", "paper", "garden", "window", "summer", "winter"};
    // Made-up words from syllables give the text enough distinct pieces for 400.
    const char* syllables[] = {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ber", "dan"};
    std::string jsonl;
    for (int i = 0; i < 300; ++i) {
      std::string src, trg;
      for (int k = 0; k < 8; ++k) src += std::string(k ? " " : "") + words[(i * 7 + k * 3) % 21];
      for (int k = 0; k < 4; ++k)
        src += std::string(" ") + syllables[(i + k) % 10] + syllables[(i * 3 + k) % 10] +
               syllables[(i / 10 + k) % 10];
      for (int k = 0; k < 4; ++k) trg += std::string(k ? " " : "") + words[(i * 5 + k) % 21];
      jsonl += jsonl_line("", src, trg);
    }
    test::write_file(tok_dir_->file("train.jsonl"), jsonl);
    TokenizerTrainOptions o;
    o.inputs = {tok_dir_->file("train.jsonl")};
    o.vocab_size = 400;
    o.threads = 2;
    tok_ = new Tokenizer(Tokenizer::train(o, tok_dir_->file("tok")));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete tok_dir_;
  }

  // Two inputs: with string and integer ids, one without; blank lines and empty texts to skip.
  std::vector<std::string> write_inputs() {
    test::write_file(dir_.file("a.jsonl"),
                     jsonl_line("\"a-1\"", "the quick brown fox", "a fox") + "\n" +
                         jsonl_line("\"a-2\"", "   ", "empty source") +
                         jsonl_line("7", "café über naïve 中文", "数据 ☃") +
                         jsonl_line("\"a-4\"", "no target here", " \t") +
                         jsonl_line("\"line\\nbreak\"", "river stone\npaper garden", "summer"));
    test::write_file(dir_.file("b.jsonl"), jsonl_line("", "Ελλάδα winter window", "lazy dog") +
                                               jsonl_line("", "over the lazy dog", "jumps"));
    return {dir_.file("a.jsonl"), dir_.file("b.jsonl")};
  }

  struct Expected {
    std::string id, src, trg;
  };
  const std::vector<Expected> expected_ = {
      {"a-1", "the quick brown fox", "a fox"},
      {"7", "café über naïve 中文", "数据 ☃"},
      {"line break", "river stone\npaper garden", "summer"},
      {"", "Ελλάδα winter window", "lazy dog"},
      {"", "over the lazy dog", "jumps"},
  };

  static test::TempDir* tok_dir_;
  static Tokenizer* tok_;
  test::TempDir dir_;
};
test::TempDir* Prepared::tok_dir_ = nullptr;
Tokenizer* Prepared::tok_ = nullptr;

TEST_F(Prepared, RoundTripsThroughTheMappedFiles) {
  const std::string out = dir_.file("prepared");
  const PrepareStats stats = prepare_dataset(write_inputs(), *tok_, out);
  EXPECT_EQ(stats.examples, expected_.size());
  EXPECT_EQ(stats.skipped, 2u);

  PreparedDataset data(out);
  ASSERT_EQ(data.size(), expected_.size());
  EXPECT_EQ(data.vocab_size(), tok_->vocab_size());
  EXPECT_EQ(data.tokenizer_fingerprint(), tok_->fingerprint());
  std::size_t src_tokens = 0, trg_tokens = 0, max_src = 0, max_trg = 0;
  for (std::size_t i = 0; i < expected_.size(); ++i) {
    const std::vector<int32_t> src = tok_->encode(expected_[i].src);
    const std::vector<int32_t> trg = tok_->encode(expected_[i].trg);
    EXPECT_EQ(to_vector(data.src(i)), src) << i;
    EXPECT_EQ(to_vector(data.trg(i)), trg) << i;
    EXPECT_EQ(data.id(i), expected_[i].id) << i;
    src_tokens += src.size();
    trg_tokens += trg.size();
    max_src = std::max(max_src, src.size());
    max_trg = std::max(max_trg, trg.size());
  }
  EXPECT_EQ(stats.src_tokens, src_tokens);
  EXPECT_EQ(stats.trg_tokens, trg_tokens);
  EXPECT_EQ(stats.max_src_len, max_src);
  EXPECT_EQ(stats.max_trg_len, max_trg);

  const nlohmann::json meta = nlohmann::json::parse(test::read_file(out + "/meta.json"));
  EXPECT_EQ(meta["format"], "moe-diffuseq-prepared");
  EXPECT_EQ(meta["version"], 1);
  EXPECT_EQ(meta["examples"], expected_.size());
  EXPECT_EQ(meta["src_tokens"], src_tokens);
  EXPECT_EQ(meta["trg_tokens"], trg_tokens);
  EXPECT_EQ(meta["max_src_len"], max_src);
  EXPECT_EQ(meta["max_trg_len"], max_trg);
  EXPECT_EQ(meta["vocab_size"], tok_->vocab_size());
  EXPECT_EQ(meta["tokenizer_fingerprint"], tok_->fingerprint());
  EXPECT_EQ(meta["skipped"], 2);
  EXPECT_EQ(meta["inputs"].size(), 2u);
  EXPECT_EQ(fs::file_size(out + "/tokens.bin"), 4 * (src_tokens + trg_tokens));
  EXPECT_EQ(fs::file_size(out + "/index.bin"), 16 + 24 * expected_.size());

  // A moved-from dataset is empty; the moved-to one still reads the mapping.
  PreparedDataset moved(std::move(data));
  EXPECT_EQ(data.size(), 0u);
  EXPECT_EQ(to_vector(moved.trg(4)), tok_->encode("jumps"));
  PreparedDataset assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.id(0), "a-1");
}

TEST_F(Prepared, ReplacesAnEarlierPreparedSetAndLeavesNoTemporaries) {
  const std::string out = dir_.file("prepared");
  prepare_dataset(write_inputs(), *tok_, out);
  test::write_file(dir_.file("c.jsonl"), jsonl_line("\"c\"", "paper window", "garden"));
  prepare_dataset({dir_.file("c.jsonl")}, *tok_, out + "/");
  PreparedDataset data(out);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data.id(0), "c");
  EXPECT_EQ(fs::list_directory(dir_.path()),
            (std::vector<std::string>{"a.jsonl", "b.jsonl", "c.jsonl", "prepared"}));
}

TEST_F(Prepared, RefusesToReplaceADirectoryThatIsNotPreparedData) {
  const std::string out = dir_.file("mine");
  fs::create_directories(out);
  test::write_file(out + "/notes.txt", "important");
  EXPECT_THROW(prepare_dataset(write_inputs(), *tok_, out), Error);
  EXPECT_EQ(test::read_file(out + "/notes.txt"), "important");
}

// An input with no usable example is a mistake (an empty file, a wrong path, every line skipped):
// an error naming the input and the skipped lines, and nothing written.
TEST_F(Prepared, EmptyInputIsAnErrorAndLeavesNothing) {
  test::write_file(dir_.file("empty.jsonl"), "\n" + jsonl_line("", "", "x"));
  const std::string out = dir_.file("prepared");
  const std::string message = test::error_of([&] { prepare_dataset({dir_.file("empty.jsonl")}, *tok_, out); });
  EXPECT_NE(message.find("no examples in"), std::string::npos) << message;
  EXPECT_NE(message.find("empty.jsonl"), std::string::npos) << message;
  EXPECT_NE(message.find("(all 1 skipped)"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(fs::list_directory(dir_.path()).size(), 1u);  // only the input: no temporary left
}

TEST_F(Prepared, BadInputLineIsAnErrorAndLeavesNothing) {
  test::write_file(dir_.file("bad.jsonl"), jsonl_line("", "ok", "ok") + "{\"src\": 3}\n");
  EXPECT_THROW(prepare_dataset({dir_.file("bad.jsonl")}, *tok_, dir_.file("out")), Error);
  EXPECT_FALSE(fs::exists(dir_.file("out")));
  EXPECT_EQ(fs::list_directory(dir_.path()), std::vector<std::string>{"bad.jsonl"});
}

// Expects opening `dir` to fail with a message naming `file`.
void expect_error_naming(const std::string& dir, const std::string& file) {
  try {
    PreparedDataset data(dir);
    FAIL() << "expected an error naming " << file;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
}

TEST_F(Prepared, CorruptedFilesGiveErrorsNamingThem) {
  const std::string out = dir_.file("prepared");
  prepare_dataset(write_inputs(), *tok_, out);
  const std::string index = test::read_file(out + "/index.bin");
  const std::string tokens = test::read_file(out + "/tokens.bin");
  const std::string meta = test::read_file(out + "/meta.json");

  std::string bad_magic = index;
  bad_magic[3] = 'X';
  test::write_file(out + "/index.bin", bad_magic);
  expect_error_naming(out, out + "/index.bin");

  test::write_file(out + "/index.bin", index.substr(0, index.size() - 5));
  expect_error_naming(out, out + "/index.bin");

  test::write_file(out + "/index.bin", index.substr(0, 10));
  expect_error_naming(out, out + "/index.bin");

  std::string bad_offset = index;
  bad_offset[16 + 24 * 4] = '\x7f';  // the last example's offset
  test::write_file(out + "/index.bin", bad_offset);
  expect_error_naming(out, out + "/index.bin");

  test::write_file(out + "/index.bin", index);
  test::write_file(out + "/tokens.bin", tokens.substr(0, tokens.size() - 4));
  expect_error_naming(out, out + "/tokens.bin");

  // A flipped high bit in a token: an id no tokenizer has.
  std::string flipped = tokens;
  flipped[4 * 3 + 3] = static_cast<char>(flipped[4 * 3 + 3] ^ 0x40);
  test::write_file(out + "/tokens.bin", flipped);
  expect_error_naming(out, out + "/tokens.bin: token 3 is ");

  test::write_file(out + "/tokens.bin", tokens);
  nlohmann::json wrong = nlohmann::json::parse(meta);
  wrong["examples"] = 6;
  test::write_file(out + "/meta.json", wrong.dump());
  expect_error_naming(out, out + "/index.bin");

  // Counts that are not integers of their type: converting them was undefined behaviour (found by fuzzing).
  const std::pair<const char*, nlohmann::json> odd_values[] = {
      {"version", 1e300}, {"examples", 1e300}, {"vocab_size", 1e300}, {"version", 2.5},
      {"examples", -1},   {"vocab_size", 4294967296}};
  for (const auto& [key, value] : odd_values) {
    nlohmann::json odd = nlohmann::json::parse(meta);
    odd[key] = value;
    test::write_file(out + "/meta.json", odd.dump());
    expect_error_naming(out, str_cat(out, "/meta.json: \"", key, "\" must be an integer"));
  }

  test::write_file(out + "/meta.json", "{not json");
  expect_error_naming(out, out + "/meta.json");

  test::write_file(out + "/meta.json", meta);
  test::write_file(out + "/ids.txt", "one\n");
  expect_error_naming(out, out + "/ids.txt");

  expect_error_naming(dir_.file("missing"), dir_.file("missing"));
}

}  // namespace
}  // namespace mds
