// Prepared data: jsonl -> tokens.bin, index.bin, ids.txt, meta.json; and the memory-mapped reader.
#include "data/prepared.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/strings.h"
#include "data/jsonl.h"

// tokens.bin and index.bin are little-endian and mapped as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "prepared data assumes a little-endian host");

namespace mds {
namespace {

constexpr char kFormat[] = "moe-diffuseq-prepared";
constexpr int kVersion = 1;
constexpr char kMagic[8] = {'M', 'D', 'S', 'I', 'D', 'X', '0', '1'};
constexpr std::size_t kHeaderBytes = 16;      // magic + uint64 count
constexpr std::size_t kEntryWords = 3;        // offset, src length, trg length
constexpr std::size_t kProgressEvery = 100000;

std::string errno_text() { return std::strerror(errno); }

// A buffered file writer on a POSIX descriptor, so that finish() can fsync what it wrote.
class OutFile {
 public:
  explicit OutFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    MDS_CHECK(fd_ >= 0, path_, ": cannot create: ", errno_text());
    buffer_.reserve(kBufferBytes);
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  void write(const void* data, std::size_t n) {
    if (buffer_.size() + n > kBufferBytes) flush();
    if (n >= kBufferBytes) {
      write_all(static_cast<const char*>(data), n);
    } else {
      buffer_.append(static_cast<const char*>(data), n);
    }
    written_ += n;
  }
  // Overwrites bytes already written (the index header's count).
  void write_at(uint64_t offset, const void* data, std::size_t n) {
    flush();
    ssize_t got = ::pwrite(fd_, data, n, static_cast<off_t>(offset));
    MDS_CHECK(got == static_cast<ssize_t>(n), path_, ": cannot write: ", errno_text());
  }
  void finish() {
    flush();
    MDS_CHECK(::fsync(fd_) == 0, path_, ": cannot sync: ", errno_text());
    int fd = fd_;
    fd_ = -1;
    MDS_CHECK(::close(fd) == 0, path_, ": cannot close: ", errno_text());
  }
  uint64_t written() const { return written_; }

 private:
  static constexpr std::size_t kBufferBytes = 1 << 20;

  void flush() {
    write_all(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  void write_all(const char* p, std::size_t n) {
    while (n > 0) {
      ssize_t got = ::write(fd_, p, n);
      if (got < 0 && errno == EINTR) continue;
      MDS_CHECK(got > 0, path_, ": cannot write: ", errno_text());
      p += got;
      n -= static_cast<std::size_t>(got);
    }
  }

  std::string path_;
  int fd_ = -1;
  std::string buffer_;
  uint64_t written_ = 0;
};

void sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some file systems do not allow it
  ::fsync(fd);
  ::close(fd);
}

std::string strip_trailing_slashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

nlohmann::json read_meta(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MDS_CHECK(f, path, ": cannot open (is this a prepared data directory?)");
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

bool is_prepared_dir(const std::string& dir) {
  try {
    nlohmann::json meta = read_meta(dir + "/meta.json");
    return meta.is_object() && meta.value("format", "") == kFormat;
  } catch (const std::exception&) {
    return false;
  }
}

// Removes the half-written directory unless the preparation finished.
struct RemoveOnFailure {
  std::string path;
  bool armed = true;
  ~RemoveOnFailure() {
    if (armed) fs::remove_all_noexcept(path);
  }
};

// Maps a whole file read-only; an empty file maps to nullptr (mmap of 0 bytes is invalid).
void* map_file(const std::string& path, std::size_t* bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MDS_CHECK(fd >= 0, path, ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string why = errno_text();
    ::close(fd);
    fail(path, ": cannot stat: ", why);
  }
  *bytes = static_cast<std::size_t>(st.st_size);
  void* map = nullptr;
  if (*bytes > 0) {
    map = ::mmap(nullptr, *bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      std::string why = errno_text();
      ::close(fd);
      fail(path, ": cannot map: ", why);
    }
  }
  ::close(fd);  // the mapping stays valid
  return map;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string per_second(std::size_t n, double seconds) {
  return str_cat(static_cast<uint64_t>(seconds > 0 ? n / seconds : 0.0));
}

}  // namespace

PrepareStats prepare_dataset(const std::vector<std::string>& inputs, const Tokenizer& tokenizer,
                             const std::string& out_dir_arg) {
  MDS_CHECK(!inputs.empty(), "data prepare: no --input given");
  MDS_CHECK(!out_dir_arg.empty(), "data prepare: no --out given");
  const std::string out_dir = strip_trailing_slashes(out_dir_arg);
  if (fs::exists(out_dir)) {
    MDS_CHECK(fs::is_directory(out_dir), out_dir, ": exists and is not a directory");
    // Never replace a directory that is not ours: --out pointing at the wrong place must not
    // delete anything.
    MDS_CHECK(fs::list_directory(out_dir).empty() || is_prepared_dir(out_dir), out_dir,
              ": exists and is not a prepared data set; remove it or choose another --out");
  }
  for (const std::string& input : inputs)
    MDS_CHECK(input == "-" || fs::exists(input), input, ": no such file");

  const std::string tmp_dir = str_cat(out_dir, ".tmp-", getpid());
  fs::remove_all_noexcept(tmp_dir);  // left by a crashed run with the same pid
  fs::create_directories(tmp_dir);
  RemoveOnFailure cleanup{tmp_dir};

  const std::string fingerprint = tokenizer.fingerprint();
  OutFile tokens(tmp_dir + "/tokens.bin");
  OutFile index(tmp_dir + "/index.bin");
  OutFile ids(tmp_dir + "/ids.txt");
  const uint64_t zero = 0;
  index.write(kMagic, sizeof kMagic);
  index.write(&zero, sizeof zero);  // the count, patched at the end

  PrepareStats stats;
  uint64_t offset = 0;  // in tokens
  const auto start = std::chrono::steady_clock::now();
  Example ex;
  std::string id;
  for (const std::string& input : inputs) {
    JsonlReader reader(input, JsonlOptions{true, true});
    std::size_t dropped = 0;  // non-empty text that tokenizes to nothing (e.g. only control chars)
    while (reader.next(ex)) {
      const std::vector<int32_t> src = tokenizer.encode(ex.src);
      const std::vector<int32_t> trg = tokenizer.encode(ex.trg);
      if (src.empty() || trg.empty()) {
        log_debug(input, ":", ex.line, ": skipped: the ", src.empty() ? "src" : "trg",
                  " has no tokens");
        ++dropped;
        continue;
      }
      tokens.write(src.data(), src.size() * sizeof(int32_t));
      tokens.write(trg.data(), trg.size() * sizeof(int32_t));
      const uint64_t entry[kEntryWords] = {offset, src.size(), trg.size()};
      index.write(entry, sizeof entry);
      offset += src.size() + trg.size();
      // ids.txt is one id a line: a line break inside an id would shift every later one.
      id = ex.id;
      for (char& c : id)
        if (c == '\n' || c == '\r') c = ' ';
      id += '\n';
      ids.write(id.data(), id.size());

      ++stats.examples;
      stats.src_tokens += src.size();
      stats.trg_tokens += trg.size();
      stats.max_src_len = std::max(stats.max_src_len, src.size());
      stats.max_trg_len = std::max(stats.max_trg_len, trg.size());
      if (stats.examples % kProgressEvery == 0) {
        const double s = seconds_since(start);
        log_info("prepared ", stats.examples, " examples, ", offset, " tokens (",
                 per_second(stats.examples, s), " examples/s)");
      }
    }
    const JsonlStats& js = reader.stats();
    stats.skipped += js.empty_src + js.empty_trg + dropped;
    log_info("data prepare: ", reader.summary(),
             dropped ? str_cat(", ", dropped, " more without tokens skipped") : std::string());
  }

  const uint64_t count = stats.examples;
  index.write_at(sizeof kMagic, &count, sizeof count);
  tokens.finish();
  index.finish();
  ids.finish();

  nlohmann::json meta = {
      {"format", kFormat},
      {"version", kVersion},
      {"examples", stats.examples},
      {"src_tokens", stats.src_tokens},
      {"trg_tokens", stats.trg_tokens},
      {"max_src_len", stats.max_src_len},
      {"max_trg_len", stats.max_trg_len},
      {"vocab_size", tokenizer.vocab_size()},
      {"tokenizer_fingerprint", fingerprint},
      {"inputs", inputs},
      {"skipped", stats.skipped},
  };
  {
    OutFile meta_file(tmp_dir + "/meta.json");
    const std::string text = meta.dump(2) + "\n";
    meta_file.write(text.data(), text.size());
    meta_file.finish();
  }
  sync_dir(tmp_dir);

  // Swap the new directory in: the old one is moved aside first, so OUT_DIR is never half-written.
  if (fs::exists(out_dir)) {
    const std::string old_dir = str_cat(out_dir, ".old-", getpid());
    fs::remove_all_noexcept(old_dir);
    fs::rename(out_dir, old_dir);
    try {
      fs::rename(tmp_dir, out_dir);
    } catch (const Error& e) {
      fail(e.what(), " (the previous data is in ", old_dir, ")");
    }
    fs::remove_all_noexcept(old_dir);  // the new data is in place: a leftover is harmless
  } else {
    fs::rename(tmp_dir, out_dir);
  }
  cleanup.armed = false;
  sync_dir(fs::parent_path(fs::absolute(out_dir)));

  const double s = seconds_since(start);
  log_info("prepared ", stats.examples, " examples (", stats.skipped, " skipped): ",
           stats.src_tokens, " src + ", stats.trg_tokens, " trg tokens, ",
           human_bytes(static_cast<double>(offset * sizeof(int32_t))), " in ",
           str_cat(static_cast<int64_t>(s * 10) / 10.0), " s (", per_second(stats.examples, s),
           " examples/s, ", per_second(stats.src_tokens + stats.trg_tokens, s),
           " tokens/s) -> ", out_dir);
  return stats;
}

// ------------------------------------------------------------------------------------ reader

PreparedDataset::PreparedDataset(const std::string& dir_arg)
    : dir_(strip_trailing_slashes(dir_arg)) {
  MDS_CHECK(fs::is_directory(dir_), dir_, ": no such directory (expected prepared data from "
            "`moe-diffuseq data prepare`)");
  const std::string meta_path = dir_ + "/meta.json";
  const nlohmann::json meta = read_meta(meta_path);
  uint64_t meta_count = 0;
  try {
    MDS_CHECK(meta.is_object() && meta.value("format", "") == kFormat, meta_path,
              ": not prepared data (\"format\" is not \"", kFormat, "\")");
    const int version = meta.at("version").get<int>();
    MDS_CHECK(version == kVersion, meta_path, ": format version ", version,
              " is not supported (this build reads version ", kVersion, ")");
    meta_count = meta.at("examples").get<uint64_t>();
    vocab_size_ = meta.at("vocab_size").get<int32_t>();
    fingerprint_ = meta.at("tokenizer_fingerprint").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail(meta_path, ": ", e.what());
  }

  // Mapped before the checks so that close() (via the destructor) releases them on an error.
  struct CloseOnFailure {
    PreparedDataset* self;
    ~CloseOnFailure() {
      if (self) self->close();
    }
  } guard{this};

  const std::string index_path = dir_ + "/index.bin";
  index_map_ = map_file(index_path, &index_bytes_);
  MDS_CHECK(index_bytes_ >= kHeaderBytes, index_path, ": truncated (", index_bytes_,
            " bytes, the header alone is ", kHeaderBytes, ")");
  const char* index_base = static_cast<const char*>(index_map_);
  MDS_CHECK(std::memcmp(index_base, kMagic, sizeof kMagic) == 0, index_path,
            ": bad header (expected \"MDSIDX01\"): not a moe-diffuseq index or corrupted");
  uint64_t count = 0;
  std::memcpy(&count, index_base + sizeof kMagic, sizeof count);
  MDS_CHECK(count == meta_count, index_path, ": holds ", count, " examples but ", meta_path,
            " says ", meta_count);
  MDS_CHECK(count <= (index_bytes_ - kHeaderBytes) / (kEntryWords * sizeof(uint64_t)) &&
                index_bytes_ == kHeaderBytes + count * kEntryWords * sizeof(uint64_t),
            index_path, ": ", index_bytes_, " bytes, expected ",
            kHeaderBytes + count * kEntryWords * sizeof(uint64_t), " for ", count,
            " examples (truncated or corrupted)");
  index_ = reinterpret_cast<const uint64_t*>(index_base + kHeaderBytes);

  const std::string tokens_path = dir_ + "/tokens.bin";
  tokens_map_ = map_file(tokens_path, &tokens_bytes_);
  MDS_CHECK(tokens_bytes_ % sizeof(int32_t) == 0, tokens_path, ": ", tokens_bytes_,
            " bytes is not a whole number of int32 tokens (truncated?)");
  tokens_ = static_cast<const int32_t*>(tokens_map_);
  const uint64_t n_tokens = tokens_bytes_ / sizeof(int32_t);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t* e = index_ + kEntryWords * i;
    // Written so that no sum can overflow on a corrupted entry.
    MDS_CHECK(e[0] <= n_tokens && e[1] <= n_tokens - e[0] && e[2] <= n_tokens - e[0] - e[1],
              index_path, ": example ", i, " (offset ", e[0], ", lengths ", e[1], " + ", e[2],
              ") lies outside ", tokens_path, " (", n_tokens, " tokens)");
  }

  const std::string ids_path = dir_ + "/ids.txt";
  std::ifstream ids(ids_path, std::ios::binary);
  MDS_CHECK(ids, ids_path, ": cannot open");
  ids_.reserve(count);
  std::string line;
  while (ids_.size() <= count && std::getline(ids, line)) ids_.push_back(line);
  MDS_CHECK(ids_.size() == count, ids_path, ": ", ids_.size() > count ? "more" : "fewer",
            " lines than the ", count, " examples");
  count_ = count;
  guard.self = nullptr;
}

PreparedDataset::~PreparedDataset() { close(); }

PreparedDataset::PreparedDataset(PreparedDataset&& other) noexcept { *this = std::move(other); }

PreparedDataset& PreparedDataset::operator=(PreparedDataset&& other) noexcept {
  if (this == &other) return *this;
  close();
  dir_ = std::move(other.dir_);
  count_ = std::exchange(other.count_, 0);
  vocab_size_ = std::exchange(other.vocab_size_, 0);
  fingerprint_ = std::move(other.fingerprint_);
  tokens_ = std::exchange(other.tokens_, nullptr);
  tokens_bytes_ = std::exchange(other.tokens_bytes_, 0);
  index_ = std::exchange(other.index_, nullptr);
  index_bytes_ = std::exchange(other.index_bytes_, 0);
  tokens_map_ = std::exchange(other.tokens_map_, nullptr);
  index_map_ = std::exchange(other.index_map_, nullptr);
  ids_ = std::move(other.ids_);
  return *this;
}

void PreparedDataset::close() {
  if (tokens_map_) ::munmap(tokens_map_, tokens_bytes_);
  if (index_map_) ::munmap(index_map_, index_bytes_);
  tokens_map_ = index_map_ = nullptr;
  tokens_ = nullptr;
  index_ = nullptr;
  tokens_bytes_ = index_bytes_ = 0;
  count_ = 0;
  ids_.clear();
}

TokenSpan PreparedDataset::src(std::size_t i) const {
  MDS_ASSERT(i < count_);
  const uint64_t* e = index_ + kEntryWords * i;
  return {tokens_ + e[0], static_cast<std::size_t>(e[1])};
}

TokenSpan PreparedDataset::trg(std::size_t i) const {
  MDS_ASSERT(i < count_);
  const uint64_t* e = index_ + kEntryWords * i;
  return {tokens_ + e[0] + e[1], static_cast<std::size_t>(e[2])};
}

std::string PreparedDataset::id(std::size_t i) const {
  MDS_ASSERT(i < count_);
  return ids_[i];
}

}  // namespace mds
