#include "data/line_reader.h"

#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace mds {

using data::LineReader;

namespace {

using test::error_of;
using test::TempDir;
using test::write_file;
using Lines = std::vector<std::string>;

// One gzip member, as `gzip` writes it.
std::string gzip_compress(const std::string& data) {
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  EXPECT_EQ(deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                         Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(&out[0]);
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string zstd_compress(const std::string& data, int level = 3) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  std::size_t n = ZSTD_compress(&out[0], out.size(), data.data(), data.size(), level);
  EXPECT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
  out.resize(n);
  return out;
}

Lines read_all(const std::string& path) {
  LineReader reader(path);
  Lines lines;
  std::string line;
  while (reader.next(line)) {
    lines.push_back(line);
    EXPECT_EQ(reader.line_number(), lines.size());
  }
  return lines;
}

// Lines that compress poorly, so that a corpus spans many zstd blocks and input chunks.
std::string noisy_lines(std::size_t count, Lines* lines) {
  std::string text;
  std::uint64_t state = 12345;
  for (std::size_t i = 0; i < count; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    std::string line = "line " + std::to_string(i) + " " + std::to_string(state >> 11);
    if (lines) lines->push_back(line);
    text += line + "\n";
  }
  return text;
}

const std::string kThree = "alpha\nbeta\ngamma\n";
const Lines kThreeLines = {"alpha", "beta", "gamma"};

TEST(LineReader, PlainFile) {
  TempDir dir;
  write_file(dir.file("a.txt"), kThree);
  EXPECT_EQ(read_all(dir.file("a.txt")), kThreeLines);
}

TEST(LineReader, PlainFinalLineWithoutNewline) {
  TempDir dir;
  write_file(dir.file("a.txt"), "alpha\nbeta\ngamma");
  EXPECT_EQ(read_all(dir.file("a.txt")), kThreeLines);
}

TEST(LineReader, EmptyFileHasNoLines) {
  TempDir dir;
  write_file(dir.file("empty.txt"), "");
  LineReader reader(dir.file("empty.txt"));
  std::string line = "untouched";
  EXPECT_FALSE(reader.next(line));
  EXPECT_FALSE(reader.next(line));  // stays at the end
  EXPECT_EQ(reader.line_number(), 0u);
}

TEST(LineReader, SingleNewlineIsOneEmptyLine) {
  TempDir dir;
  write_file(dir.file("nl.txt"), "\n");
  EXPECT_EQ(read_all(dir.file("nl.txt")), Lines({""}));
}

TEST(LineReader, PathIsKept) {
  TempDir dir;
  write_file(dir.file("a.txt"), kThree);
  LineReader reader(dir.file("a.txt"));
  EXPECT_EQ(reader.path(), dir.file("a.txt"));
}

TEST(LineReader, GzipFile) {
  TempDir dir;
  write_file(dir.file("a.txt.gz"), gzip_compress(kThree));
  EXPECT_EQ(read_all(dir.file("a.txt.gz")), kThreeLines);
}

TEST(LineReader, GzipMultiLineWithoutFinalNewline) {
  TempDir dir;
  write_file(dir.file("a.gz"), gzip_compress("one\ntwo\nthree\nfour"));
  EXPECT_EQ(read_all(dir.file("a.gz")), Lines({"one", "two", "three", "four"}));
}

TEST(LineReader, GzipMultiMember) {
  // `cat a.gz b.gz > c.gz` is a valid gzip file; a line may span the members.
  TempDir dir;
  write_file(dir.file("c.gz"), gzip_compress("one\ntw") + gzip_compress("o\nthree\n"));
  EXPECT_EQ(read_all(dir.file("c.gz")), Lines({"one", "two", "three"}));
}

TEST(LineReader, GzipLargeFile) {
  TempDir dir;
  Lines expected;
  write_file(dir.file("big.gz"), gzip_compress(noisy_lines(200000, &expected)));
  EXPECT_EQ(read_all(dir.file("big.gz")), expected);
}

TEST(LineReader, GzipTruncatedIsAnError) {
  TempDir dir;
  std::string gz = gzip_compress(kThree);
  write_file(dir.file("cut.gz"), gz.substr(0, gz.size() - 6));  // part of the trailer lost
  std::string msg = error_of([&] { read_all(dir.file("cut.gz")); });
  EXPECT_NE(msg.find(dir.file("cut.gz") + ": corrupt gzip data after line "), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("unexpected end of file"), std::string::npos) << msg;
}

TEST(LineReader, GzipCorruptIsAnError) {
  TempDir dir;
  std::string gz = gzip_compress(noisy_lines(1000, nullptr));
  for (std::size_t i = 20; i < 60; ++i) gz[i] = static_cast<char>(gz[i] ^ 0x5a);
  write_file(dir.file("bad.gz"), gz);
  std::string msg = error_of([&] { read_all(dir.file("bad.gz")); });
  EXPECT_NE(msg.find(dir.file("bad.gz") + ": corrupt gzip data after line "), std::string::npos)
      << msg;
}

TEST(LineReader, ZstdFile) {
  TempDir dir;
  write_file(dir.file("a.zst"), zstd_compress(kThree));
  EXPECT_EQ(read_all(dir.file("a.zst")), kThreeLines);
}

TEST(LineReader, ZstdWithoutFinalNewline) {
  TempDir dir;
  write_file(dir.file("a.zst"), zstd_compress("x\ny"));
  EXPECT_EQ(read_all(dir.file("a.zst")), Lines({"x", "y"}));
}

TEST(LineReader, ZstdMultiFrame) {
  TempDir dir;
  write_file(dir.file("a.zst"), zstd_compress("one\ntw") + zstd_compress("o\nthree\n"));
  EXPECT_EQ(read_all(dir.file("a.zst")), Lines({"one", "two", "three"}));
}

TEST(LineReader, ZstdLargeFile) {
  TempDir dir;
  Lines expected;
  write_file(dir.file("big.zst"), zstd_compress(noisy_lines(200000, &expected)));
  EXPECT_EQ(read_all(dir.file("big.zst")), expected);
}

TEST(LineReader, ZstdTruncatedSmallFileIsAnError) {
  TempDir dir;
  std::string z = zstd_compress(kThree);
  write_file(dir.file("cut.zst"), z.substr(0, z.size() - 1));  // last byte of the frame lost
  // zstd may hand out the start of a raw block before seeing its end, so some lines may come
  // first; the cut last line must not, and the message names the last complete line.
  Lines got;
  std::string msg = error_of([&] {
    LineReader reader(dir.file("cut.zst"));
    std::string line;
    while (reader.next(line)) got.push_back(line);
  });
  ASSERT_LT(got.size(), kThreeLines.size());
  EXPECT_EQ(got, Lines(kThreeLines.begin(), kThreeLines.begin() + got.size()));
  EXPECT_EQ(msg, dir.file("cut.zst") + ": corrupt zstd data after line " +
                     std::to_string(got.size()) + ": unexpected end of file (incomplete frame)");
}

TEST(LineReader, ZstdTruncatedLargeFileNamesTheLineReached) {
  TempDir dir;
  Lines expected;
  std::string z = zstd_compress(noisy_lines(200000, &expected));
  ASSERT_GT(z.size(), 2u << 20);  // spans several 1 MiB input chunks
  write_file(dir.file("cut.zst"), z.substr(0, z.size() / 2));

  LineReader reader(dir.file("cut.zst"));
  std::string line;
  std::size_t count = 0;
  std::string msg;
  try {
    while (reader.next(line)) {
      ASSERT_LT(count, expected.size());
      ASSERT_EQ(line, expected[count]);
      ++count;
    }
  } catch (const Error& e) {
    msg = e.what();
  }
  ASSERT_FALSE(msg.empty()) << "the truncation went unnoticed after " << count << " lines";
  EXPECT_GT(count, 1000u);
  EXPECT_LT(count, expected.size());
  EXPECT_NE(msg.find(dir.file("cut.zst") + ": corrupt zstd data after line " +
                     std::to_string(count) + ": "),
            std::string::npos)
      << msg;
}

TEST(LineReader, ZstdTruncatedAfterMagicIsAnError) {
  TempDir dir;
  write_file(dir.file("magic.zst"), std::string("\x28\xb5\x2f\xfd", 4));
  std::string msg = error_of([&] { read_all(dir.file("magic.zst")); });
  EXPECT_NE(msg.find("corrupt zstd data after line 0"), std::string::npos) << msg;
}

TEST(LineReader, ZstdGarbageIsAnError) {
  TempDir dir;
  write_file(dir.file("bad.zst"), std::string("\x28\xb5\x2f\xfd", 4) + std::string(64, '\xff'));
  std::string msg = error_of([&] { read_all(dir.file("bad.zst")); });
  EXPECT_NE(msg.find(dir.file("bad.zst") + ": corrupt zstd data after line 0: "),
            std::string::npos)
      << msg;
}

TEST(LineReader, FormatComesFromMagicBytesNotName) {
  TempDir dir;
  write_file(dir.file("really-zstd.txt"), zstd_compress(kThree));
  write_file(dir.file("really-gzip.zst"), gzip_compress(kThree));
  write_file(dir.file("really-plain.gz"), kThree);
  EXPECT_EQ(read_all(dir.file("really-zstd.txt")), kThreeLines);
  EXPECT_EQ(read_all(dir.file("really-gzip.zst")), kThreeLines);
  EXPECT_EQ(read_all(dir.file("really-plain.gz")), kThreeLines);
}

TEST(LineReader, ShortPlainFiles) {
  // Shorter than any magic number.
  TempDir dir;
  write_file(dir.file("1.txt"), "x");
  write_file(dir.file("2.txt"), "\x1f");
  EXPECT_EQ(read_all(dir.file("1.txt")), Lines({"x"}));
  EXPECT_EQ(read_all(dir.file("2.txt")), Lines({"\x1f"}));
}

TEST(LineReader, BomIsStripped) {
  TempDir dir;
  const std::string text = "\xEF\xBB\xBFhello\nworld\n";
  write_file(dir.file("bom.txt"), text);
  write_file(dir.file("bom.gz"), gzip_compress(text));
  write_file(dir.file("bom.zst"), zstd_compress(text));
  for (const char* name : {"bom.txt", "bom.gz", "bom.zst"})
    EXPECT_EQ(read_all(dir.file(name)), Lines({"hello", "world"})) << name;
}

TEST(LineReader, BomOnlyFileIsEmpty) {
  TempDir dir;
  write_file(dir.file("bom.txt"), "\xEF\xBB\xBF");
  EXPECT_EQ(read_all(dir.file("bom.txt")), Lines());
}

TEST(LineReader, BomIsOnlyStrippedAtFileStart) {
  TempDir dir;
  write_file(dir.file("bom.txt"), "a\n\xEF\xBB\xBF" "b\n");
  EXPECT_EQ(read_all(dir.file("bom.txt")), Lines({"a", "\xEF\xBB\xBF" "b"}));
}

TEST(LineReader, CrlfIsStripped) {
  TempDir dir;
  write_file(dir.file("crlf.txt"), "one\r\ntwo\r\n\r\nthree\r");
  EXPECT_EQ(read_all(dir.file("crlf.txt")), Lines({"one", "two", "", "three"}));
}

TEST(LineReader, OnlyOneTrailingCrIsStrippedAndLoneCrIsNoLineBreak) {
  TempDir dir;
  write_file(dir.file("cr.txt"), "a\r\r\nb\rc\n");
  EXPECT_EQ(read_all(dir.file("cr.txt")), Lines({"a\r", "b\rc"}));
}

TEST(LineReader, BlankAndWhitespaceLinesAreReturned) {
  TempDir dir;
  write_file(dir.file("blank.txt"), "a\n\n  \n\t\nb\n\n");
  EXPECT_EQ(read_all(dir.file("blank.txt")), Lines({"a", "", "  ", "\t", "b", ""}));
}

TEST(LineReader, LineLongerThanTheChunk) {
  TempDir dir;
  std::string long_line(3 << 20, 'x');
  for (std::size_t i = 0; i < long_line.size(); i += 997) long_line[i] = 'y';
  const std::string text = "short\n" + long_line + "\nafter\n" + long_line;
  const Lines expected = {"short", long_line, "after", long_line};
  write_file(dir.file("long.txt"), text);
  write_file(dir.file("long.gz"), gzip_compress(text));
  write_file(dir.file("long.zst"), zstd_compress(text));
  for (const char* name : {"long.txt", "long.gz", "long.zst"}) {
    Lines got = read_all(dir.file(name));
    ASSERT_EQ(got.size(), 4u) << name;
    EXPECT_TRUE(got == expected) << name;  // not EXPECT_EQ: a diff of 3 MiB lines is unreadable
  }
}

TEST(LineReader, Unicode) {
  TempDir dir;
  const Lines expected = {"café é", "中文文本", "emoji 😀👍🏽", "עברית RTL العربية",
                         "mixed ß ø ñ"};
  std::string text;
  for (const auto& l : expected) text += l + "\r\n";
  write_file(dir.file("u.txt"), text);
  write_file(dir.file("u.zst"), zstd_compress(text));
  write_file(dir.file("u.gz"), gzip_compress(text));
  EXPECT_EQ(read_all(dir.file("u.txt")), expected);
  EXPECT_EQ(read_all(dir.file("u.zst")), expected);
  EXPECT_EQ(read_all(dir.file("u.gz")), expected);
}

TEST(LineReader, MissingFileIsAnError) {
  TempDir dir;
  std::string msg = error_of([&] { LineReader reader(dir.file("nope.txt")); });
  EXPECT_EQ(msg, "cannot open " + dir.file("nope.txt") + ": No such file or directory");
}

TEST(LineReader, DirectoryIsAnError) {
  TempDir dir;
  std::string msg = error_of([&] { LineReader reader(dir.path()); });
  EXPECT_EQ(msg, "cannot open " + dir.path() + ": Is a directory");
}

TEST(LineReader, LineNumbersCountEveryLine) {
  TempDir dir;
  write_file(dir.file("n.txt"), "a\n\nb\n");
  LineReader reader(dir.file("n.txt"));
  std::string line;
  ASSERT_TRUE(reader.next(line));
  EXPECT_EQ(reader.line_number(), 1u);
  ASSERT_TRUE(reader.next(line));
  EXPECT_EQ(line, "");
  EXPECT_EQ(reader.line_number(), 2u);
  ASSERT_TRUE(reader.next(line));
  EXPECT_EQ(line, "b");
  EXPECT_EQ(reader.line_number(), 3u);
  EXPECT_FALSE(reader.next(line));
  EXPECT_EQ(reader.line_number(), 3u);
}

}  // namespace
}  // namespace mds
