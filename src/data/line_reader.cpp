#include "data/line_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace mds::data {

namespace {

// Bytes read (and decompressed) per step. The fuzz build makes it small and odd, so that lines,
// multi-byte characters and compressed frames cross chunk boundaries everywhere.
#ifndef MDS_LINE_READER_CHUNK
#define MDS_LINE_READER_CHUNK (1 << 20)
#endif
constexpr std::size_t kChunk = MDS_LINE_READER_CHUNK;

// Thrown by the decoders; LineReader adds the path and the line reached.
struct CorruptData {
  std::string reason;
};

// The file descriptor, with the bytes already read to sniff the format served first.
class RawInput {
 public:
  explicit RawInput(const std::string& path) : path_(path) {
    if (path == "-") {
      fd_ = STDIN_FILENO;
      return;
    }
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail("cannot open ", path, ": ", std::strerror(errno));
    struct stat st;
    // open() succeeds on a directory; say so now rather than "cannot read" later.
    if (::fstat(fd_, &st) == 0 && S_ISDIR(st.st_mode)) {
      ::close(fd_);
      fail("cannot open ", path, ": ", std::strerror(EISDIR));
    }
  }
  ~RawInput() {
    if (fd_ >= 0 && fd_ != STDIN_FILENO) ::close(fd_);
  }
  RawInput(const RawInput&) = delete;
  RawInput& operator=(const RawInput&) = delete;

  // Reads until at least `n` bytes are buffered (or end of file), and returns the buffered bytes.
  const std::string& peek(std::size_t n) {
    char tmp[64];
    while (!eof_ && pending_.size() < n) {
      std::size_t got = read_fd(tmp, sizeof tmp);
      if (got == 0) eof_ = true;
      pending_.append(tmp, got);
    }
    return pending_;
  }

  // Up to `cap` bytes; 0 only at end of file.
  std::size_t read(char* out, std::size_t cap) {
    if (pending_offset_ < pending_.size()) {
      std::size_t n = std::min(cap, pending_.size() - pending_offset_);
      std::memcpy(out, pending_.data() + pending_offset_, n);
      pending_offset_ += n;
      return n;
    }
    if (eof_) return 0;
    std::size_t n = read_fd(out, cap);
    if (n == 0) eof_ = true;
    return n;
  }

 private:
  std::size_t read_fd(char* out, std::size_t cap) {
    for (;;) {
      ssize_t n = ::read(fd_, out, cap);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) fail("cannot read ", path_, ": ", std::strerror(errno));
    }
  }

  std::string path_;
  int fd_ = -1;
  std::string pending_;
  std::size_t pending_offset_ = 0;
  bool eof_ = false;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Up to `cap` decoded bytes; 0 only at the end of the stream. Throws CorruptData.
  virtual std::size_t read(char* out, std::size_t cap) = 0;
  virtual const char* format() const = 0;
};

class PlainDecoder : public Decoder {
 public:
  explicit PlainDecoder(RawInput& in) : in_(in) {}
  std::size_t read(char* out, std::size_t cap) override { return in_.read(out, cap); }
  const char* format() const override { return "plain"; }

 private:
  RawInput& in_;
};

class GzipDecoder : public Decoder {
 public:
  explicit GzipDecoder(RawInput& in) : in_(in), buf_(kChunk) {
    std::memset(&zs_, 0, sizeof zs_);
    // 16 + MAX_WBITS: gzip wrapper only (the magic bytes said so).
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) fail("zlib: inflateInit2 failed");
  }
  ~GzipDecoder() override { inflateEnd(&zs_); }

  std::size_t read(char* out, std::size_t cap) override {
    zs_.next_out = reinterpret_cast<Bytef*>(out);
    zs_.avail_out = static_cast<uInt>(cap);
    for (;;) {
      if (zs_.avail_in == 0 && !input_eof_) {
        std::size_t n = in_.read(buf_.data(), buf_.size());
        if (n == 0) input_eof_ = true;
        zs_.next_in = reinterpret_cast<Bytef*>(buf_.data());
        zs_.avail_in = static_cast<uInt>(n);
      }
      const bool no_input = zs_.avail_in == 0 && input_eof_;
      if (no_input && member_done_) return 0;
      if (member_done_) {
        // More bytes after a complete member: a multi-member file (cat a.gz b.gz).
        if (inflateReset(&zs_) != Z_OK) throw CorruptData{"inflateReset failed"};
        member_done_ = false;
      }
      int ret = inflate(&zs_, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        member_done_ = true;
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {  // Z_BUF_ERROR: no progress, not fatal
        throw CorruptData{zs_.msg ? zs_.msg : str_cat("inflate error ", ret)};
      }
      std::size_t produced = cap - zs_.avail_out;
      if (produced > 0) return produced;
      if (no_input && !member_done_) throw CorruptData{"unexpected end of file"};
    }
  }
  const char* format() const override { return "gzip"; }

 private:
  RawInput& in_;
  std::vector<char> buf_;
  z_stream zs_;
  bool input_eof_ = false;
  bool member_done_ = false;
};

class ZstdDecoder : public Decoder {
 public:
  explicit ZstdDecoder(RawInput& in) : in_(in), buf_(kChunk) {
    ds_ = ZSTD_createDStream();
    if (ds_ == nullptr) fail("zstd: cannot create a decompression stream");
    ZSTD_initDStream(ds_);
  }
  ~ZstdDecoder() override { ZSTD_freeDStream(ds_); }

  std::size_t read(char* out, std::size_t cap) override {
    ZSTD_outBuffer ob{out, cap, 0};
    for (;;) {
      if (ib_.pos == ib_.size && !input_eof_) {
        std::size_t n = in_.read(buf_.data(), buf_.size());
        if (n == 0) input_eof_ = true;
        ib_ = ZSTD_inBuffer{buf_.data(), n, 0};
      }
      const bool no_input = ib_.pos == ib_.size && input_eof_;
      if (no_input && last_ret_ == 0) return 0;
      // With no input left this still flushes output held back when `out` was full.
      last_ret_ = ZSTD_decompressStream(ds_, &ob, &ib_);
      if (ZSTD_isError(last_ret_)) throw CorruptData{ZSTD_getErrorName(last_ret_)};
      if (ob.pos > 0) return ob.pos;
      // Nonzero means the frame is not finished: the input was cut short.
      if (no_input) {
        if (last_ret_ == 0) return 0;
        throw CorruptData{"unexpected end of file (incomplete frame)"};
      }
    }
  }
  const char* format() const override { return "zstd"; }

 private:
  RawInput& in_;
  std::vector<char> buf_;
  ZSTD_DStream* ds_ = nullptr;
  ZSTD_inBuffer ib_{nullptr, 0, 0};
  bool input_eof_ = false;
  std::size_t last_ret_ = 1;  // a frame is expected: its magic number was seen
};

}  // namespace

struct LineReader::Source {
  explicit Source(const std::string& path) : raw(path) {
    const std::string& head = raw.peek(4);
    auto has_magic = [&](const char* magic, std::size_t n) {
      return head.size() >= n && std::memcmp(head.data(), magic, n) == 0;
    };
    if (has_magic("\x1f\x8b", 2))
      decoder = std::make_unique<GzipDecoder>(raw);
    else if (has_magic("\x28\xb5\x2f\xfd", 4))
      decoder = std::make_unique<ZstdDecoder>(raw);
    else
      decoder = std::make_unique<PlainDecoder>(raw);
  }
  RawInput raw;
  std::unique_ptr<Decoder> decoder;
};

LineReader::LineReader(const std::string& path)
    : path_(path), source_(std::make_unique<Source>(path)) {
  // A short first read (a pipe) must not hide a BOM split across reads.
  while (buffer_.size() < 3 && refill()) {
  }
  if (buffer_.compare(0, 3, "\xEF\xBB\xBF") == 0) pos_ = 3;
}

LineReader::~LineReader() = default;

bool LineReader::refill() {
  if (eof_) return false;
  // Drop the lines already returned so the buffer stays the size of one line plus a chunk.
  buffer_.erase(0, pos_);
  pos_ = 0;
  const std::size_t old = buffer_.size();
  buffer_.resize(old + kChunk);
  std::size_t n = 0;
  try {
    n = source_->decoder->read(&buffer_[old], kChunk);
  } catch (const CorruptData& e) {
    buffer_.resize(old);
    fail(path_, ": corrupt ", source_->decoder->format(), " data after line ", line_number_, ": ",
         e.reason);
  }
  buffer_.resize(old + n);
  if (n == 0) eof_ = true;
  return n > 0;
}

bool LineReader::next(std::string& line) {
  std::size_t scan = pos_;  // bytes before `scan` are known to hold no '\n'
  for (;;) {
    std::size_t nl = buffer_.find('\n', scan);
    if (nl != std::string::npos) {
      line.assign(buffer_, pos_, nl - pos_);
      pos_ = nl + 1;
      break;
    }
    if (eof_) {
      if (pos_ >= buffer_.size()) return false;
      line.assign(buffer_, pos_, std::string::npos);  // last line without '\n'
      pos_ = buffer_.size();
      break;
    }
    const std::size_t searched = buffer_.size() - pos_;  // refill() moves pos_ to 0
    refill();
    scan = searched;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  ++line_number_;
  return true;
}

}  // namespace mds::data
