// safetensors reader and writer on POSIX files (see safetensors.h for the format).
#include "io/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>

#include "core/error.h"
#include "core/fs.h"

// The format is little-endian and we copy tensor bytes as they are in memory.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O assumes a little-endian host");

namespace mds::io {
namespace {

struct DtypeInfo {
  at::ScalarType type;
  const char* name;
  uint64_t size;
};

// BOOL is stored as one byte per element, as torch keeps it.
constexpr DtypeInfo kDtypes[] = {
    {at::kDouble, "F64", 8},    {at::kFloat, "F32", 4}, {at::kHalf, "F16", 2},
    {at::kBFloat16, "BF16", 2}, {at::kLong, "I64", 8},  {at::kInt, "I32", 4},
    {at::kShort, "I16", 2},     {at::kChar, "I8", 1},   {at::kByte, "U8", 1},
    {at::kBool, "BOOL", 1},
};

const DtypeInfo* find_dtype(at::ScalarType type) {
  for (const DtypeInfo& d : kDtypes)
    if (d.type == type) return &d;
  return nullptr;
}

const DtypeInfo* find_dtype(const std::string& name) {
  for (const DtypeInfo& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

// Closes a descriptor on every way out of a scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void fail_errno(const std::string& path, const char* what, int err) {
  fail(path, ": ", what, ": ", std::strerror(err));
}

// Reads exactly `size` bytes at `offset`; the caller has checked that the file holds them.
void read_all(int fd, const std::string& path, void* data, uint64_t size, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<uint64_t>(size, 1u << 30));
    const ssize_t n = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(path, "cannot read", errno);
    if (n == 0) fail(path, ": truncated: the file ended while reading (did it change meanwhile?)");
    p += n;
    size -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

// One header entry, checked against itself (offsets against each other and the file come later).
Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& value) {
  const std::string where = str_cat(path, ": tensor \"", name, "\": ");
  MDS_CHECK(value.is_object(), where, "expected an object, got ", value.type_name());
  Entry e{name, nullptr, {}, 0, 0};

  const auto dtype = value.find("dtype");
  MDS_CHECK(dtype != value.end() && dtype->is_string(), where,
            "\"dtype\" is missing or not a string");
  e.dtype = find_dtype(dtype->get<std::string>());
  MDS_CHECK(e.dtype != nullptr, where, "unknown dtype \"", dtype->get<std::string>(),
            "\" (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");

  const auto shape = value.find("shape");
  MDS_CHECK(shape != value.end() && shape->is_array(), where,
            "\"shape\" is missing or not an array");
  uint64_t numel = 1;
  bool overflow = false;
  for (const nlohmann::json& dim : *shape) {
    MDS_CHECK(dim.is_number_unsigned(), where, "\"shape\" holds ", dim.dump(),
              ", not a non-negative integer");
    const uint64_t d = dim.get<uint64_t>();
    MDS_CHECK(d <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where, "dimension ",
              d, " is too large");
    e.shape.push_back(static_cast<int64_t>(d));
    if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / d) overflow = true;
    numel *= d;
  }

  const auto offsets = value.find("data_offsets");
  MDS_CHECK(offsets != value.end() && offsets->is_array() && offsets->size() == 2 &&
                (*offsets)[0].is_number_unsigned() && (*offsets)[1].is_number_unsigned(),
            where, "\"data_offsets\" must be [begin, end] with non-negative integers");
  e.begin = (*offsets)[0].get<uint64_t>();
  e.end = (*offsets)[1].get<uint64_t>();
  MDS_CHECK(e.begin <= e.end, where, "data_offsets [", e.begin, ", ", e.end,
            "] end before they begin");
  // A shape with a zero dimension has no elements, whatever the overflowed product says.
  const bool empty = std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end();
  if (empty) {
    numel = 0;
    overflow = false;
  }
  const uint64_t expected = numel * e.dtype->size;
  MDS_CHECK(!overflow && numel <= std::numeric_limits<uint64_t>::max() / e.dtype->size &&
                e.end - e.begin == expected,
            where, "data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin,
            " bytes, but shape ", shape->dump(), " of ", e.dtype->name, " needs ",
            overflow ? std::string("more than 2^64") : std::to_string(expected));
  return e;
}

}  // namespace

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    MDS_CHECK(name != "__metadata__", path, ": a tensor cannot be named \"__metadata__\"");
    MDS_CHECK(tensor.defined(), path, ": tensor \"", name, "\" is undefined");
    const DtypeInfo* dtype = find_dtype(tensor.scalar_type());
    MDS_CHECK(dtype != nullptr, path, ": tensor \"", name, "\": dtype ", tensor.scalar_type(),
              " cannot be stored (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * dtype->size;
    header[name] = {{"dtype", dtype->name},
                    {"shape", tensor.sizes().vec()},
                    {"data_offsets", nlohmann::json::array({offset, offset + bytes})}};
    offset += bytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;

  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& e) {  // names or metadata that are not UTF-8
    fail(path, ": cannot write the header: ", e.what());
  }
  // Spaces up to a multiple of 8, as Python's safetensors pads, so the data starts aligned.
  json.append((8 - json.size() % 8) % 8, ' ');
  uint64_t length = json.size();
  char length_bytes[8];
  std::memcpy(length_bytes, &length, 8);

  const std::string tmp = str_cat(path, ".tmp-", ::getpid());
  try {
    fs::BufferedWriter file(tmp);
    file.write(length_bytes, 8);
    file.write(json);
    for (const auto& [name, tensor] : tensors) {
      if (tensor.numel() == 0) continue;
      // One CPU copy at a time (none for CPU tensors already contiguous): what goes to the file.
      const at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
      file.write(cpu.data_ptr(), static_cast<std::size_t>(cpu.numel() * cpu.element_size()));
    }
    file.finish();
    fs::rename(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  const std::string dir = fs::parent_path(path);
  fs::fsync_path(dir.empty() ? "." : dir);
}

TensorMap load_safetensors(const std::string& path, Metadata* metadata) {
  Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) fail_errno(path, "cannot open", errno);
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail_errno(path, "cannot stat", errno);
  MDS_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  MDS_CHECK(size >= 8, path, ": truncated: ", size,
            " bytes, fewer than the 8 of the header length");

  uint64_t length = 0;
  read_all(file.fd, path, &length, 8, 0);
  MDS_CHECK(length <= size - 8, path, ": the header length ", length,
            " goes beyond the end of the file (", size, " bytes): truncated or not safetensors");
  std::string json(length, '\0');
  read_all(file.fd, path, json.data(), length, 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": the header is not valid JSON: ", e.what());
  }
  MDS_CHECK(header.is_object(), path, ": the header is a JSON ", header.type_name(),
            ", not an object");

  Metadata meta;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      MDS_CHECK(value.is_object(), path, ": \"__metadata__\" must be an object of strings");
      for (const auto& [key, text] : value.items()) {
        MDS_CHECK(text.is_string(), path, ": \"__metadata__\": \"", key, "\" is a ",
                  text.type_name(), ", not a string");
        meta[key] = text.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, value));
  }

  // The tensors must cover the data exactly, back to back: no overlap, no hole, no trailing bytes.
  const uint64_t data_size = size - 8 - length;
  std::vector<const Entry*> order;
  for (const Entry& e : entries) {
    MDS_CHECK(e.end <= data_size, path, ": tensor \"", e.name, "\": data_offsets [", e.begin, ", ",
              e.end, "] go beyond the ", data_size, " bytes of data (truncated file?)");
    order.push_back(&e);
  }
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : order) {
    if (e->begin < covered)
      fail(path, ": tensors \"", previous->name, "\" and \"", e->name, "\" overlap (bytes ",
           e->begin, " to ", covered, ")");
    if (e->begin > covered)
      fail(path, ": bytes ", covered, " to ", e->begin, " belong to no tensor (a hole ",
           previous ? str_cat("after \"", previous->name, "\"") : std::string("at the start"),
           ", before \"", e->name, "\")");
    covered = e->end;
    previous = e;
  }
  if (covered != data_size) {
    const std::string after =
        previous ? str_cat("after \"", previous->name, "\"") : "the header lists no tensors";
    fail(path, ": bytes ", covered, " to ", data_size, " belong to no tensor (", after, ")");
  }

  TensorMap tensors;
  for (const Entry& e : entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type));
    if (e.end > e.begin)
      read_all(file.fd, path, t.data_ptr(), e.end - e.begin, 8 + length + e.begin);
    tensors.emplace(e.name, std::move(t));
  }
  if (metadata != nullptr) *metadata = std::move(meta);
  return tensors;
}

}  // namespace mds::io
