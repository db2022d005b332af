#include "data/jsonl.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zstd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "test_util.h"

namespace mds {

using data::Example;
using data::JsonlOptions;
using data::JsonlReader;
using data::JsonlStats;
using data::json_quote;
using data::read_jsonl;

namespace {

using test::error_of;
using test::TempDir;
using test::write_file;

// Writes `text` to DIR/file.jsonl and returns the message read_jsonl throws on it.
std::string jsonl_error(const std::string& text, JsonlOptions options = {}) {
  TempDir dir;
  write_file(dir.file("file.jsonl"), text);
  return error_of([&] { read_jsonl(dir.file("file.jsonl"), options); });
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

const std::string kGood1 = R"({"src": "a b", "trg": "c"})";
const std::string kGood2 = R"({"src": "d", "trg": "e f"})";

TEST(Jsonl, ReadsExamples) {
  TempDir dir;
  write_file(dir.file("file.jsonl"), kGood1 + "\n" + kGood2 + "\n");
  JsonlStats stats;
  auto ex = read_jsonl(dir.file("file.jsonl"), {}, &stats);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].src, "a b");
  EXPECT_EQ(ex[0].trg, "c");
  EXPECT_EQ(ex[0].id, "");
  EXPECT_TRUE(ex[0].refs.empty());
  EXPECT_EQ(ex[0].line, 1u);
  EXPECT_EQ(ex[1].src, "d");
  EXPECT_EQ(ex[1].trg, "e f");
  EXPECT_EQ(ex[1].line, 2u);
  EXPECT_EQ(stats.lines, 2u);
  EXPECT_EQ(stats.examples, 2u);
  EXPECT_EQ(stats.blank, 0u);
  EXPECT_EQ(stats.empty_src, 0u);
  EXPECT_EQ(stats.empty_trg, 0u);
}

TEST(Jsonl, ReaderStreamsAndStops) {
  TempDir dir;
  write_file(dir.file("file.jsonl"), kGood1 + "\n" + kGood2);  // no final newline
  JsonlReader reader(dir.file("file.jsonl"));
  EXPECT_EQ(reader.path(), dir.file("file.jsonl"));
  Example ex;
  ASSERT_TRUE(reader.next(ex));
  EXPECT_EQ(ex.src, "a b");
  ASSERT_TRUE(reader.next(ex));
  EXPECT_EQ(ex.src, "d");
  EXPECT_EQ(ex.line, 2u);
  EXPECT_FALSE(reader.next(ex));
  EXPECT_EQ(reader.stats().examples, 2u);
}

TEST(Jsonl, ExtraFieldsAreIgnored) {
  TempDir dir;
  write_file(dir.file("file.jsonl"),
             R"({"meta": {"x": [1, 2]}, "src": "s", "score": 0.5, "trg": "t", "n": null})"
             "\n");
  auto ex = read_jsonl(dir.file("file.jsonl"));
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].src, "s");
  EXPECT_EQ(ex[0].trg, "t");
}

TEST(Jsonl, IdAsStringAndAsInteger) {
  TempDir dir;
  write_file(dir.file("file.jsonl"),
             R"({"id": "abc-1", "src": "s", "trg": "t"})" "\n"
             R"({"id": 42, "src": "s", "trg": "t"})" "\n"
             R"({"id": -7, "src": "s", "trg": "t"})" "\n"
             R"({"id": 18446744073709551615, "src": "s", "trg": "t"})" "\n"
             R"({"src": "s", "trg": "t"})" "\n");
  auto ex = read_jsonl(dir.file("file.jsonl"));
  ASSERT_EQ(ex.size(), 5u);
  EXPECT_EQ(ex[0].id, "abc-1");
  EXPECT_EQ(ex[1].id, "42");
  EXPECT_EQ(ex[2].id, "-7");
  EXPECT_EQ(ex[3].id, "18446744073709551615");
  EXPECT_EQ(ex[4].id, "");  // not carried over from the previous line
}

TEST(Jsonl, IdOfAnotherTypeIsAnError) {
  std::string msg = jsonl_error(kGood1 + "\n" + R"({"id": 1.5, "src": "s", "trg": "t"})" "\n");
  EXPECT_TRUE(contains(msg, "file.jsonl:2: field \"id\": ")) << msg;
  EXPECT_TRUE(contains(msg, "got a number")) << msg;
  msg = jsonl_error(R"({"id": true, "src": "s", "trg": "t"})");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: field \"id\": ")) << msg;
  EXPECT_TRUE(contains(msg, "got a boolean")) << msg;
}

TEST(Jsonl, Refs) {
  TempDir dir;
  write_file(dir.file("file.jsonl"),
             R"({"src": "s", "trg": "t", "refs": ["r1", "r2", "中文"]})" "\n"
             R"({"src": "s", "trg": "t", "refs": []})" "\n"
             R"({"src": "s", "trg": "t"})" "\n");
  auto ex = read_jsonl(dir.file("file.jsonl"));
  ASSERT_EQ(ex.size(), 3u);
  EXPECT_EQ(ex[0].refs, std::vector<std::string>({"r1", "r2", "中文"}));
  EXPECT_TRUE(ex[1].refs.empty());
  EXPECT_TRUE(ex[2].refs.empty());
}

TEST(Jsonl, RefsNotAnArrayIsAnError) {
  std::string msg = jsonl_error(kGood1 + "\n\n" + R"({"src": "s", "trg": "t", "refs": "r"})");
  EXPECT_TRUE(contains(msg, "file.jsonl:3: field \"refs\": ")) << msg;
  EXPECT_TRUE(contains(msg, "got a string")) << msg;
}

TEST(Jsonl, RefsItemNotAStringIsAnError) {
  std::string msg = jsonl_error(R"({"src": "s", "trg": "t", "refs": ["a", 3]})");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: field \"refs\": ")) << msg;
  EXPECT_TRUE(contains(msg, "item 1")) << msg;
  EXPECT_TRUE(contains(msg, "got a number")) << msg;
}

TEST(Jsonl, BlankLinesAreSkippedAndCounted) {
  TempDir dir;
  write_file(dir.file("file.jsonl"), "\n" + kGood1 + "\n   \n\t\r\n" + kGood2 + "\n\n");
  JsonlStats stats;
  auto ex = read_jsonl(dir.file("file.jsonl"), {}, &stats);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].line, 2u);
  EXPECT_EQ(ex[1].line, 5u);
  EXPECT_EQ(stats.lines, 6u);
  EXPECT_EQ(stats.blank, 4u);
  EXPECT_EQ(stats.examples, 2u);
}

TEST(Jsonl, EmptySrcAndTrgAreSkippedAndCounted) {
  TempDir dir;
  write_file(dir.file("file.jsonl"),
             R"({"src": "", "trg": "t"})" "\n"
             R"({"src": "s", "trg": "  \t "})" "\n"
             R"({"src": " \n", "trg": ""})" "\n"
             R"({"src": "kept", "trg": "t"})" "\n"
             R"({"src": "s", "trg": ""})" "\n");
  JsonlStats stats;
  auto ex = read_jsonl(dir.file("file.jsonl"), {}, &stats);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].src, "kept");
  EXPECT_EQ(ex[0].line, 4u);
  EXPECT_EQ(stats.empty_src, 2u);  // an example with both empty counts once, as empty src
  EXPECT_EQ(stats.empty_trg, 2u);
  EXPECT_EQ(stats.examples, 1u);
  EXPECT_EQ(stats.lines, 5u);
}

TEST(Jsonl, EmptyExamplesAreKeptWithoutSkipEmpty) {
  TempDir dir;
  write_file(dir.file("file.jsonl"), R"({"src": "", "trg": " "})" "\n");
  JsonlOptions options;
  options.skip_empty = false;
  JsonlStats stats;
  auto ex = read_jsonl(dir.file("file.jsonl"), options, &stats);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].src, "");
  EXPECT_EQ(ex[0].trg, " ");
  EXPECT_EQ(stats.empty_src, 0u);
  EXPECT_EQ(stats.empty_trg, 0u);
}

TEST(Jsonl, TextIsKeptUntrimmed) {
  TempDir dir;
  write_file(dir.file("file.jsonl"), R"({"src": "  a b \t", "trg": "\n c "})" "\n");
  auto ex = read_jsonl(dir.file("file.jsonl"));
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].src, "  a b \t");
  EXPECT_EQ(ex[0].trg, "\n c ");
}

TEST(Jsonl, RequireTrgFalseAcceptsMissingTrg) {
  TempDir dir;
  write_file(dir.file("file.jsonl"),
             R"({"src": "only source"})" "\n" R"({"src": "s2", "trg": "t2"})" "\n");
  JsonlOptions options;
  options.require_trg = false;
  auto ex = read_jsonl(dir.file("file.jsonl"), options);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].src, "only source");
  EXPECT_EQ(ex[0].trg, "");
  EXPECT_EQ(ex[1].trg, "t2");
  // A present trg must still be a string.
  std::string msg = jsonl_error(R"({"src": "s", "trg": 1})", options);
  EXPECT_TRUE(contains(msg, "file.jsonl:1: field \"trg\": expected a string, got a number")) << msg;
}

TEST(Jsonl, MissingSrcIsAnError) {
  std::string msg = jsonl_error(kGood1 + "\n" + kGood2 + "\n" + R"({"trg": "t"})" "\n");
  EXPECT_TRUE(contains(msg, "file.jsonl:3: field \"src\" is missing")) << msg;
}

TEST(Jsonl, MissingTrgIsAnError) {
  std::string msg = jsonl_error(kGood1 + "\n" + R"({"src": "s", "target": "t"})" "\n");
  EXPECT_TRUE(contains(msg, "file.jsonl:2: field \"trg\" is missing")) << msg;
}

TEST(Jsonl, WrongFieldTypeIsAnError) {
  std::string msg = jsonl_error(kGood1 + "\n" + R"({"src": "s", "trg": 5})" "\n");
  EXPECT_TRUE(contains(msg, "file.jsonl:2: field \"trg\": expected a string, got a number")) << msg;
  msg = jsonl_error(R"({"src": ["s"], "trg": "t"})");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: field \"src\": expected a string, got an array")) << msg;
  msg = jsonl_error(R"({"src": null, "trg": "t"})");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: field \"src\": expected a string, got null")) << msg;
  msg = jsonl_error(R"({"src": {"a": 1}, "trg": "t"})");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: field \"src\": expected a string, got an object"))
      << msg;
}

TEST(Jsonl, NotAnObjectIsAnError) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[1, 2]", "an array"},    {"3", "a number"},  {"\"text\"", "a string"},
      {"null", "null"},          {"true", "a boolean"}, {"-1.5e3", "a number"},
  };
  for (const auto& [line, type] : cases) {
    std::string msg = jsonl_error(kGood1 + "\n" + kGood2 + "\n\n" + line + "\n");
    EXPECT_TRUE(contains(msg, "file.jsonl:4: expected a JSON object, got " + type)) << msg;
  }
}

TEST(Jsonl, MalformedJsonIsAnError) {
  std::string msg = jsonl_error(kGood1 + "\n" + R"({"src": "s", "trg": "t")" "\n");
  EXPECT_TRUE(contains(msg, "file.jsonl:2: malformed JSON: ")) << msg;
  EXPECT_FALSE(contains(msg, "[json.exception")) << msg;
  msg = jsonl_error(R"({"src": "s", "trg": "t"} {})");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: malformed JSON: ")) << msg;
  msg = jsonl_error(R"({'src': 's'})");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: malformed JSON: ")) << msg;
  // A number past the range of a double (found by jsonl_fuzz: it ended the process).
  msg = jsonl_error(R"({"src": "s", "trg": "t", "n": 1e999})");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: malformed JSON: number overflow")) << msg;
}

TEST(Jsonl, MalformedJsonMessageStaysShort) {
  // An unterminated long string: nlohmann quotes all it read; we keep only its end.
  std::string msg = jsonl_error(R"({"src": ")" + std::string(5000, 'w'));
  EXPECT_TRUE(contains(msg, "file.jsonl:1: malformed JSON: ")) << msg;
  EXPECT_LT(msg.size(), 300u) << msg;
}

TEST(Jsonl, InvalidUtf8IsAnError) {
  // Byte 10 (1-based) is a lone continuation byte.
  std::string msg = jsonl_error(kGood1 + "\n" + "{\"src\": \"\x80\", \"trg\": \"t\"}\n");
  EXPECT_TRUE(contains(msg, "file.jsonl:2: invalid UTF-8 at byte 10")) << msg;
  // A truncated 3-byte sequence, after two valid multi-byte characters (é = 2 bytes, 中 = 3).
  msg = jsonl_error("{\"src\": \"é中\xE4\xB8\", \"trg\": \"t\"}");
  EXPECT_TRUE(contains(msg, "file.jsonl:1: invalid UTF-8 at byte 15")) << msg;
}

TEST(Jsonl, UnicodeBomAndCrlf) {
  TempDir dir;
  write_file(dir.file("file.jsonl"),
             "\xEF\xBB\xBF{\"src\": \"café\", \"trg\": \"中文 😀\"}\r\n"
             "{\"src\": \"עברית\", \"trg\": \"\\u00e9\\ud83d\\ude00\"}\r\n");
  auto ex = read_jsonl(dir.file("file.jsonl"));
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].src, "café");
  EXPECT_EQ(ex[0].trg, "中文 😀");
  EXPECT_EQ(ex[1].src, "עברית");
  EXPECT_EQ(ex[1].trg, "é😀");  // JSON escapes decoded to UTF-8
}

TEST(Jsonl, ReadsZstdCompressedFiles) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 1000; ++i)
    text += R"({"id": )" + std::to_string(i) + R"(, "src": "s)" + std::to_string(i) +
            R"(", "trg": "t"})" "\n";
  std::string z(ZSTD_compressBound(text.size()), '\0');
  z.resize(ZSTD_compress(&z[0], z.size(), text.data(), text.size(), 3));
  write_file(dir.file("file.jsonl.zst"), z);
  auto ex = read_jsonl(dir.file("file.jsonl.zst"));
  ASSERT_EQ(ex.size(), 1000u);
  EXPECT_EQ(ex[999].id, "999");
  EXPECT_EQ(ex[999].src, "s999");
  EXPECT_EQ(ex[999].line, 1000u);
}

TEST(Jsonl, MissingFileIsAnError) {
  TempDir dir;
  std::string msg = error_of([&] { read_jsonl(dir.file("none.jsonl")); });
  EXPECT_EQ(msg, "cannot open " + dir.file("none.jsonl") + ": No such file or directory");
}

TEST(Jsonl, Summary) {
  TempDir dir;
  std::string text = "\n\n";
  for (int i = 0; i < 1234; ++i) text += kGood1 + "\n";
  text += R"({"src": "s", "trg": ""})" "\n" R"({"src": "s", "trg": " "})" "\n"
          R"({"src": "s", "trg": ""})" "\n";
  write_file(dir.file("file.jsonl"), text);
  JsonlReader reader(dir.file("file.jsonl"));
  Example ex;
  while (reader.next(ex)) {
  }
  EXPECT_EQ(reader.summary(), "1,234 examples from " + dir.file("file.jsonl") +
                                  " (2 blank lines skipped, 3 with an empty target skipped)");

  write_file(dir.file("one.jsonl"), kGood1 + "\n" + R"({"src": "", "trg": "t"})" "\n\n");
  JsonlReader one(dir.file("one.jsonl"));
  while (one.next(ex)) {
  }
  EXPECT_EQ(one.summary(), "1 example from " + dir.file("one.jsonl") +
                               " (1 blank line skipped, 1 with an empty source skipped)");

  write_file(dir.file("clean.jsonl"), kGood1 + "\n");
  JsonlReader clean(dir.file("clean.jsonl"));
  while (clean.next(ex)) {
  }
  EXPECT_EQ(clean.summary(), "1 example from " + dir.file("clean.jsonl"));
}

TEST(JsonQuote, EscapesPerJson) {
  EXPECT_EQ(json_quote(""), "\"\"");
  EXPECT_EQ(json_quote("plain text"), "\"plain text\"");
  EXPECT_EQ(json_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(json_quote("l1\nl2\tx\r\b\f"), "\"l1\\nl2\\tx\\r\\b\\f\"");
  EXPECT_EQ(json_quote(std::string("\x01\x1f", 2) + std::string(1, '\0')),
            "\"\\u0001\\u001f\\u0000\"");
  EXPECT_EQ(json_quote("/ é 中文 😀"), "\"/ é 中文 😀\"");  // non-ASCII kept as is
}

TEST(JsonQuote, RoundTripsThroughAJsonParser) {
  const std::string text = std::string("q\"b\\s\n\t\x02 é 中 😀 עברית") + '\0';
  EXPECT_EQ(nlohmann::json::parse(json_quote(text)).get<std::string>(), text);
}

// The real wiki-simplification training set from the shared data directory, when present.
TEST(Jsonl, SharedWikiSimplificationTrain) {
  std::string shared;
  if (const char* env = std::getenv("MDS_SHARED_DIR"); env != nullptr && *env != '\0') {
    shared = env;
  } else if (fs::is_directory(test::source_path("../shared/data"))) {
    shared = test::source_path("../shared");
  } else {
    GTEST_SKIP() << "no shared data: set MDS_SHARED_DIR or put it at MDS_SOURCE_DIR/../shared";
  }
  const std::string path = shared + "/data/wiki-simplification/train.jsonl.zst";
  ASSERT_TRUE(fs::exists(path)) << path;
  JsonlStats stats;
  auto ex = read_jsonl(path, {}, &stats);
  EXPECT_EQ(ex.size(), 12800u);
  EXPECT_EQ(stats.examples, 12800u);
  EXPECT_EQ(stats.lines, 12800u);
  EXPECT_EQ(stats.blank, 0u);
  ASSERT_FALSE(ex.empty());
  EXPECT_TRUE(contains(ex[0].src, "UN General Assembly")) << ex[0].src;
  EXPECT_EQ(ex.back().line, 12800u);
}

}  // namespace
}  // namespace mds
