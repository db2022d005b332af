// safetensors: round trips of every dtype (bit-exact, including NaN payloads and -0), scalars,
// empty and non-contiguous tensors, metadata; a byte-exact file for a tiny case; a hand-written
// file read byte by byte; and one error per kind of corruption, each naming the file.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "test_util.h"
#include "io/safetensors.h"

namespace mds {

using io::Metadata;
using io::TensorMap;
using io::load_safetensors;
using io::save_safetensors;

namespace {

using test::TempDir;

// The tensor's bytes as they would be stored.
std::string bytes_of(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  if (c.numel() == 0) return "";
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

void expect_same(const at::Tensor& expected, const at::Tensor& actual, const std::string& name) {
  ASSERT_TRUE(actual.defined()) << name;
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << name;
  EXPECT_EQ(actual.sizes().vec(), expected.sizes().vec()) << name;
  EXPECT_TRUE(actual.device().is_cpu()) << name;
  EXPECT_TRUE(actual.is_contiguous()) << name;
  EXPECT_EQ(bytes_of(actual), bytes_of(expected)) << name;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file from a header (as written) and the data bytes.
std::string make_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

// Runs load_safetensors on `bytes` written to PATH and returns the error message.
std::string load_error(const TempDir& dir, const std::string& bytes) {
  const std::string path = dir.file("bad.safetensors");
  test::write_file(path, bytes);
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << "no error for a corrupted file";
  return "";
}

at::Tensor bits(std::vector<int16_t> values, at::ScalarType type) {
  return at::tensor(values, at::kShort).view(type);
}

TEST(Safetensors, RoundTripsEveryDtypeBitExactly) {
  TempDir dir;
  TensorMap tensors;
  // Zero, -0, one, +-inf, a NaN with a payload, a subnormal, the largest finite value.
  tensors["f16"] =
      bits({0x0000, int16_t(0x8000), 0x3C00, 0x7C00, int16_t(0xFC00), 0x7E01, 0x0001, 0x7BFF},
           at::kHalf)
          .reshape({2, 4});
  tensors["bf16"] =
      bits({0x0000, int16_t(0x8000), 0x3F80, 0x7F80, int16_t(0xFF80), 0x7FC1, 0x0001, 0x7F7F},
           at::kBFloat16);
  tensors["f32"] =
      at::tensor(std::vector<int32_t>{0, INT32_MIN, 0x3F800000, 0x7F800000, 0x7FC00123, 0x00000001},
                 at::kInt)
          .view(at::kFloat)
          .reshape({3, 2});
  tensors["f64"] =
      at::tensor(std::vector<int64_t>{0, INT64_MIN, 0x7FF8000000000abcLL, 1}, at::kLong)
          .view(at::kDouble);
  tensors["i64"] = at::tensor(std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX}, at::kLong);
  tensors["i32"] = at::tensor(std::vector<int32_t>{INT32_MIN, -1, 0, INT32_MAX}, at::kInt);
  tensors["i16"] = at::tensor(std::vector<int16_t>{INT16_MIN, -1, 0, INT16_MAX}, at::kShort);
  tensors["i8"] = at::tensor(std::vector<int8_t>{INT8_MIN, -1, 0, INT8_MAX}, at::kChar);
  tensors["u8"] = at::tensor(std::vector<uint8_t>{0, 1, 128, 255}, at::kByte).reshape({2, 1, 2});
  tensors["bool"] = at::tensor(std::vector<uint8_t>{1, 0, 0, 1, 1}, at::kByte).to(at::kBool);
  const std::string path = dir.file("all.safetensors");
  save_safetensors(path, tensors);

  const TensorMap loaded = load_safetensors(path);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) expect_same(tensor, loaded.at(name), name);
  // BOOL is one byte per element (after the 16 bytes of "bf16").
  const std::string file = test::read_file(path);
  EXPECT_NE(file.find("\"bool\":{\"data_offsets\":[16,21],\"dtype\":\"BOOL\",\"shape\":[5]}"),
            std::string::npos);
  EXPECT_EQ(loaded.at("bool").sum().item<int64_t>(), 3);
}

TEST(Safetensors, ScalarsEmptyAndNonContiguousTensors) {
  TempDir dir;
  const at::Tensor base = at::arange(24, at::kFloat).reshape({4, 6});
  TensorMap tensors;
  tensors["scalar"] = at::scalar_tensor(3.5, at::kDouble);
  tensors["empty"] = at::empty({0, 3}, at::kFloat);
  tensors["empty_bool"] = at::empty({2, 0}, at::kBool);
  tensors["transposed"] = base.t();
  tensors["strided"] = base.slice(1, 1, 6, 2);  // [4, 3], every other column
  tensors["expanded"] = at::arange(3, at::kLong).expand({2, 3});
  ASSERT_FALSE(tensors["transposed"].is_contiguous());
  ASSERT_FALSE(tensors["strided"].is_contiguous());
  const std::string path = dir.file("shapes.safetensors");
  save_safetensors(path, tensors);

  const TensorMap loaded = load_safetensors(path);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) expect_same(tensor, loaded.at(name), name);
  EXPECT_EQ(loaded.at("scalar").dim(), 0);
  EXPECT_EQ(loaded.at("scalar").item<double>(), 3.5);
  EXPECT_TRUE(at::equal(loaded.at("transposed"), base.t()));
  EXPECT_TRUE(at::equal(loaded.at("strided"), base.slice(1, 1, 6, 2)));
  // After "empty", "empty_bool" (no bytes) and "expanded" (6 I64).
  EXPECT_NE(test::read_file(path).find("\"scalar\":{\"data_offsets\":[48,56],\"dtype\":\"F64\","
                                       "\"shape\":[]}"),
            std::string::npos);
}

TEST(Safetensors, LoadedTensorsOwnTheirMemory) {
  TempDir dir;
  const std::string path = dir.file("own.safetensors");
  save_safetensors(path, {{"a", at::ones({1000}, at::kFloat)}});
  TensorMap loaded = load_safetensors(path);
  fs::remove_file(path);
  loaded.at("a").add_(1);  // writable, and alive after the file is gone
  EXPECT_EQ(loaded.at("a").sum().item<float>(), 2000.0f);
}

TEST(Safetensors, LargeRandomTensorRoundTrips) {
  TempDir dir;
  const std::string path = dir.file("big.safetensors");
  const at::Tensor t = at::randn({1024, 1024}, at::kFloat);
  save_safetensors(path, {{"w", t}, {"h", t.to(at::kBFloat16)}});
  const TensorMap loaded = load_safetensors(path);
  expect_same(t, loaded.at("w"), "w");
  expect_same(t.to(at::kBFloat16), loaded.at("h"), "h");
}

TEST(Safetensors, CudaTensorsAreCopiedToTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  TempDir dir;
  const std::string path = dir.file("gpu.safetensors");
  const at::Tensor t = at::randn({7, 5}, at::kFloat);
  save_safetensors(path, {{"t", t.to(at::kCUDA).t()}});
  expect_same(t.t(), load_safetensors(path).at("t"), "t");
}

TEST(Safetensors, Metadata) {
  TempDir dir;
  const std::string path = dir.file("meta.safetensors");
  const Metadata metadata{{"format", "pt"}, {"step", "12"}, {"note", "ünïcode \"quoted\""}};
  save_safetensors(path, {{"x", at::zeros({2})}}, metadata);
  Metadata read{{"stale", "entry"}};
  load_safetensors(path, &read);
  EXPECT_EQ(read, metadata);

  // No metadata: no "__metadata__" key, and the output map is cleared.
  save_safetensors(path, {{"x", at::zeros({2})}});
  EXPECT_EQ(test::read_file(path).find("__metadata__"), std::string::npos);
  load_safetensors(path, &read);
  EXPECT_TRUE(read.empty());
}

TEST(Safetensors, NoTensorsAtAll) {
  TempDir dir;
  const std::string path = dir.file("none.safetensors");
  save_safetensors(path, {});
  EXPECT_EQ(test::read_file(path), le64(8) + "{}      ");
  EXPECT_TRUE(load_safetensors(path).empty());
}

TEST(Safetensors, WritesTheExpectedBytes) {
  TempDir dir;
  const std::string path = dir.file("tiny.safetensors");
  save_safetensors(path,
                   {{"b", at::tensor(std::vector<uint8_t>{1}, at::kByte).to(at::kBool)},
                    {"a", at::tensor(std::vector<float>{1.0f, -2.0f})}},
                   {{"k", "v"}});
  // 133 bytes of JSON, keys sorted, then 3 spaces up to 136 = 0x88.
  const std::string expected =
      std::string("\x88\0\0\0\0\0\0\0", 8) +
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"a\":{\"data_offsets\":[0,8],\"dtype\":\"F32\",\"shape\":[2]},"
      "\"b\":{\"data_offsets\":[8,9],\"dtype\":\"BOOL\",\"shape\":[1]}}   " +
      std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0\x01", 9);
  EXPECT_EQ(test::read_file(path), expected);
  // The atomic write leaves no temporary behind.
  EXPECT_EQ(fs::list_directory(dir.path()), std::vector<std::string>{"tiny.safetensors"});
}

TEST(Safetensors, ReadsAHandWrittenFile) {
  TempDir dir;
  const std::string path = dir.file("hand.safetensors");
  // Keys in another order than ours, metadata last, padded with spaces as Python pads.
  const std::string header =
      "{\"x\":{\"dtype\":\"I16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
      "\"y\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
      "\"__metadata__\":{\"format\":\"pt\"}}  ";
  ASSERT_EQ(header.size(), 144u);
  const std::string data(
      "\x01\x00\x02\x00\xff\xff\x00\x80"  // 1, 2, -1, -32768
      "\x80\x3f\x00\xc0",                 // bf16 1.0, -2.0
      12);
  test::write_file(path, std::string("\x90\0\0\0\0\0\0\0", 8) + header + data);

  Metadata metadata;
  const TensorMap loaded = load_safetensors(path, &metadata);
  EXPECT_EQ(metadata, (Metadata{{"format", "pt"}}));
  ASSERT_EQ(loaded.size(), 2u);
  const at::Tensor x = loaded.at("x");
  EXPECT_EQ(x.scalar_type(), at::kShort);
  EXPECT_EQ(x.sizes().vec(), (std::vector<int64_t>{2, 2}));
  EXPECT_TRUE(at::equal(x, at::tensor(std::vector<int16_t>{1, 2, -1, -32768}).reshape({2, 2})));
  const at::Tensor y = loaded.at("y");
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  EXPECT_EQ(y.to(at::kFloat)[0].item<float>(), 1.0f);
  EXPECT_EQ(y.to(at::kFloat)[1].item<float>(), -2.0f);
}

TEST(Safetensors, OverwritesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  save_safetensors(path, {{"a", at::ones({100})}});
  save_safetensors(path, {{"b", at::zeros({2}, at::kLong)}});
  const TensorMap loaded = load_safetensors(path);
  ASSERT_EQ(loaded.size(), 1u);
  expect_same(at::zeros({2}, at::kLong), loaded.at("b"), "b");
  EXPECT_EQ(fs::list_directory(dir.path()), std::vector<std::string>{"w.safetensors"});
}

TEST(Safetensors, RefusesWhatItCannotStore) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  try {
    save_safetensors(path, {{"c", at::zeros({2}, at::kComplexFloat)}});
    FAIL() << "complex saved";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor \"c\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", at::zeros({2})}}), Error);
  EXPECT_THROW(save_safetensors(path, {{"u", at::Tensor()}}), Error);
  EXPECT_THROW(save_safetensors(dir.file("missing/x.safetensors"), {}), Error);
  EXPECT_TRUE(fs::list_directory(dir.path()).empty());
}

// ---------------------------------------------------------------------------- corrupted files

const char* kGood = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

void expect_in(const std::string& message, const std::string& part) {
  EXPECT_NE(message.find(part), std::string::npos) << "\"" << part << "\" not in: " << message;
}

TEST(SafetensorsErrors, TheGoodFileLoads) {
  TempDir dir;
  test::write_file(dir.file("good.safetensors"), make_file(kGood, std::string(8, '\0')));
  EXPECT_EQ(load_safetensors(dir.file("good.safetensors")).size(), 1u);
}

TEST(SafetensorsErrors, MissingFile) {
  TempDir dir;
  try {
    load_safetensors(dir.file("nope.safetensors"));
    FAIL();
  } catch (const Error& e) {
    expect_in(e.what(), dir.file("nope.safetensors"));
    expect_in(e.what(), "cannot open");
  }
}

TEST(SafetensorsErrors, TruncatedBeforeTheHeaderLength) {
  TempDir dir;
  expect_in(load_error(dir, ""), "truncated");
  expect_in(load_error(dir, "\x05\0\0\0\0"), "truncated");
}

TEST(SafetensorsErrors, HeaderBeyondTheFile) {
  TempDir dir;
  expect_in(load_error(dir, le64(1000) + "{}"), "beyond the end of the file");
  expect_in(load_error(dir, le64(UINT64_MAX) + "{}"), "beyond the end of the file");
  // A file cut inside its data.
  expect_in(load_error(dir, make_file(kGood, std::string(5, '\0'))), "tensor \"t\"");
}

TEST(SafetensorsErrors, InvalidJson) {
  TempDir dir;
  expect_in(load_error(dir, make_file("{\"t\": {", "")), "not valid JSON");
  expect_in(load_error(dir, make_file("[1, 2]", "")), "not an object");
  expect_in(load_error(dir, make_file("{\"t\": 5}", "")), "tensor \"t\": expected an object");
  expect_in(load_error(dir, make_file("{\"__metadata__\": {\"k\": 1}}", "")), "\"k\"");
}

TEST(SafetensorsErrors, BadEntries) {
  TempDir dir;
  expect_in(load_error(dir, make_file("{\"t\":{\"dtype\":\"Q4\",\"shape\":[2],"
                                      "\"data_offsets\":[0,8]}}",
                                      std::string(8, '\0'))),
            "tensor \"t\": unknown dtype \"Q4\"");
  expect_in(load_error(dir, make_file("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}",
                                      std::string(8, '\0'))),
            "tensor \"t\": \"dtype\"");
  expect_in(load_error(dir, make_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],"
                                      "\"data_offsets\":[0,8]}}",
                                      std::string(8, '\0'))),
            "tensor \"t\": \"shape\"");
  expect_in(load_error(dir, make_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                                      "\"data_offsets\":[0]}}",
                                      std::string(8, '\0'))),
            "tensor \"t\": \"data_offsets\"");
  expect_in(load_error(dir, make_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                                      "\"data_offsets\":[8,0]}}",
                                      std::string(8, '\0'))),
            "tensor \"t\": data_offsets [8, 0]");
}

TEST(SafetensorsErrors, ShapeAndOffsetsDisagree) {
  TempDir dir;
  expect_in(load_error(dir, make_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],"
                                      "\"data_offsets\":[0,8]}}",
                                      std::string(8, '\0'))),
            "tensor \"t\": data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12");
  // A product of dimensions that overflows 64 bits.
  expect_in(load_error(dir, make_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                                      "\"data_offsets\":[0,8]}}",
                                      std::string(8, '\0'))),
            "tensor \"t\"");
}

TEST(SafetensorsErrors, OffsetsOutOfRange) {
  TempDir dir;
  expect_in(load_error(dir, make_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                                      "\"data_offsets\":[4,12]}}",
                                      std::string(8, '\0'))),
            "tensor \"t\": data_offsets [4, 12] go beyond the 8 bytes of data");
}

TEST(SafetensorsErrors, OverlapsHolesAndTrailingBytes) {
  TempDir dir;
  expect_in(load_error(dir, make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                                      "\"data_offsets\":[0,8]},"
                                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
                                      "\"data_offsets\":[4,8]}}",
                                      std::string(8, '\0'))),
            "tensors \"a\" and \"b\" overlap");
  expect_in(load_error(dir, make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                                      "\"data_offsets\":[0,4]},"
                                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
                                      "\"data_offsets\":[8,12]}}",
                                      std::string(12, '\0'))),
            "bytes 4 to 8 belong to no tensor (a hole after \"a\", before \"b\")");
  expect_in(load_error(dir, make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                                      "\"data_offsets\":[4,8]}}",
                                      std::string(8, '\0'))),
            "bytes 0 to 4 belong to no tensor");
  expect_in(load_error(dir, make_file(kGood, std::string(10, '\0'))),
            "bytes 8 to 10 belong to no tensor (after \"t\")");
  expect_in(load_error(dir, make_file("{}", std::string(3, '\0'))), "belong to no tensor");
}

TEST(SafetensorsErrors, EmptyTensorsMaySitAnywhereInTheRun) {
  TempDir dir;
  const std::string header =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
      "\"z\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
  test::write_file(dir.file("e.safetensors"), make_file(header, std::string(8, '\0')));
  const TensorMap loaded = load_safetensors(dir.file("e.safetensors"));
  EXPECT_EQ(loaded.size(), 4u);
  EXPECT_EQ(loaded.at("e").sizes().vec(), (std::vector<int64_t>{0, 3}));
}

}  // namespace
}  // namespace mds
