// File-system helpers on POSIX calls (fs.h says why not <filesystem>).
#include "core/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "core/error.h"

namespace mds::fs {
namespace {

[[noreturn]] void fail_errno(const std::string& path, const char* what, int err = errno) {
  fail(path, ": ", what, ": ", std::strerror(err));
}

bool stat_path(const std::string& path, struct stat* st) {
  return ::stat(path.c_str(), st) == 0;
}

// Closes a descriptor on every way out of a scope.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  // Closes now and reports the error: close can be the first to report a failed write (NFS).
  void close_checked(const std::string& path) {
    const int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail_errno(path, "cannot close");
  }
};

}  // namespace

std::string strip_trailing_slashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

bool exists(const std::string& path) {
  struct stat st {};
  return stat_path(path, &st);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return stat_path(path, &st) && S_ISDIR(st.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return stat_path(path, &st) && S_ISREG(st.st_mode);
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  if (!stat_path(path, &st)) fail_errno(path, "cannot stat");
  if (!S_ISREG(st.st_mode)) fail(path, ": not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

void create_directories(const std::string& path) {
  if (path.empty()) fail("cannot create a directory with an empty path");
  if (is_directory(path)) return;
  const std::string parent = parent_path(path);
  if (!parent.empty() && parent != path) create_directories(parent);
  if (::mkdir(path.c_str(), 0777) != 0) {
    const int err = errno;
    // EEXIST from a directory: another process made it meanwhile.
    if (!(err == EEXIST && is_directory(path)))
      fail_errno(path, "cannot create the directory", err);
  }
}

void remove_all(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {  // lstat: a symlink is removed, not its target
    if (errno == ENOENT) return;
    fail_errno(path, "cannot stat");
  }
  if (S_ISDIR(st.st_mode)) {
    for (const std::string& name : list_directory(path)) remove_all(join(path, name));
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT)
      fail_errno(path, "cannot remove the directory");
  } else if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    fail_errno(path, "cannot remove");
  }
}

bool remove_all_noexcept(const std::string& path) noexcept {
  try {
    remove_all(path);
    return true;
  } catch (...) {
    return false;
  }
}

void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0) fail_errno(path, "cannot remove");
}

void rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    fail(from, ": cannot rename to ", to, ": ", std::strerror(errno));
}

std::vector<std::string> list_directory(const std::string& path) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), &::closedir);
  if (!dir) fail_errno(path, "cannot open the directory");
  std::vector<std::string> names;
  for (;;) {
    errno = 0;  // readdir returns nullptr both at the end and on an error
    const dirent* entry = ::readdir(dir.get());
    if (entry == nullptr) {
      if (errno != 0) fail_errno(path, "cannot read the directory");
      break;
    }
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string join(const std::string& a, const std::string& b) {
  if (a.empty() || (!b.empty() && b.front() == '/')) return b;
  if (b.empty()) return a;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string parent_path(const std::string& path) {
  const std::string p = strip_trailing_slashes(path);
  const std::size_t slash = p.rfind('/');
  if (slash == std::string::npos) return "";
  const std::string parent = strip_trailing_slashes(p.substr(0, slash));
  return parent.empty() ? "/" : parent;
}

std::string filename(const std::string& path) {
  const std::string p = strip_trailing_slashes(path);
  const std::size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string absolute(const std::string& path) {
  if (path.empty()) fail("cannot make an empty path absolute");
  if (path.front() == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof cwd) == nullptr) fail_errno(path, "cannot get the working directory");
  return join(cwd, path);
}

std::string canonical(const std::string& path) {
  std::unique_ptr<char, void (*)(void*)> resolved(::realpath(path.c_str(), nullptr), &std::free);
  if (!resolved) fail_errno(path, "cannot resolve the path");
  return resolved.get();
}

std::string temp_directory() {
  const char* dir = std::getenv("TMPDIR");
  return dir != nullptr && *dir != '\0' ? dir : "/tmp";
}

std::string make_temp_directory(const std::string& prefix) {
  std::string path = join(temp_directory(), prefix + "XXXXXX");
  if (::mkdtemp(path.data()) == nullptr) fail_errno(path, "cannot create a temporary directory");
  return path;
}

void fsync_path(const std::string& path) {
  Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) fail_errno(path, "cannot open to sync");
  // EINVAL: the file system cannot sync this kind of file (some do not sync directories).
  if (::fsync(file.fd) != 0 && errno != EINVAL) fail_errno(path, "cannot sync");
  file.close_checked(path);
}

namespace {

// Every byte, through short writes and signals; errors name `path`.
void write_all(int fd, const std::string& path, const char* p, std::size_t left) {
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_errno(path, "cannot write", n < 0 ? errno : EIO);
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void write_file_atomic(const std::string& given, const std::string& bytes) {
  struct stat st {};
  if (::stat(given.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    MDS_CHECK(!S_ISDIR(st.st_mode), given, " is a directory, not a file to write");
    // A device, FIFO or socket (or a link to one, such as a shell's >(...)): written to in place;
    // replacing /dev/null would break the machine.
    Fd file{::open(given.c_str(), O_WRONLY | O_CLOEXEC)};
    if (file.fd < 0) fail_errno(given, "cannot open for writing");
    write_all(file.fd, given, bytes.data(), bytes.size());
    file.close_checked(given);
    return;
  }
  // A symlink to a file (or a dangling one): the final target is replaced, the links stay.
  std::string path = given;
  for (int depth = 0; ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode); ++depth) {
    MDS_CHECK(depth < 40, given, ": too many levels of symlinks");
    char target[PATH_MAX];
    const ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
    if (n <= 0) fail_errno(path, "cannot read the symlink");
    target[n] = '\0';
    const std::string t = target, dir = parent_path(path);
    path = (t[0] == '/' || dir.empty()) ? t : join(dir, t);
  }
  const std::string tmp = str_cat(path, ".tmp-", ::getpid());
  try {
    Fd file{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (file.fd < 0) {
      const int err = errno;
      const std::string dir = parent_path(path);
      // Name what the user gave, not the temporary file next to it.
      MDS_CHECK(err != ENOENT || dir.empty() || is_directory(dir), "cannot write ", given, ": the directory ", dir,
                " does not exist (", std::strerror(err), ")");
      fail_errno(tmp, "cannot create", err);
    }
    write_all(file.fd, tmp, bytes.data(), bytes.size());
    if (::fsync(file.fd) != 0) fail_errno(tmp, "cannot sync");
    file.close_checked(tmp);
    rename(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  const std::string dir = parent_path(path);
  fsync_path(dir.empty() ? "." : dir);
}

std::string read_file(const std::string& path) {
  Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) fail_errno(path, "cannot open");
  std::string bytes;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(file.fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(path, "cannot read");
    if (n == 0) break;
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  return bytes;
}

bool replace_directory(const std::string& staged, const std::string& dir) {
  const std::string old = str_cat(dir, ".old-", ::getpid());
  const bool replacing = exists(dir);
  if (replacing) {
    remove_all(old);  // left by an earlier process that had our pid
    rename(dir, old);
  }
  try {
    rename(staged, dir);
  } catch (...) {
    if (replacing) ::rename(old.c_str(), dir.c_str());  // put the previous one back
    throw;
  }
  const std::string parent = parent_path(absolute(dir));
  fsync_path(parent.empty() ? "/" : parent);
  // The new directory is in place: a failure to clean up must not fail the caller.
  return !replacing || remove_all_noexcept(old);
}

// ---------------------------------------------------------------------------- BufferedWriter

namespace {
constexpr std::size_t kWriterBuffer = 1 << 20;
}

BufferedWriter::BufferedWriter(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_errno(path_, "cannot create");
  buffer_.reserve(kWriterBuffer);
}

BufferedWriter::~BufferedWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void BufferedWriter::write(const void* data, std::size_t n) {
  if (buffer_.size() + n > kWriterBuffer) flush();
  if (n >= kWriterBuffer) {
    write_all(static_cast<const char*>(data), n);
  } else {
    buffer_.append(static_cast<const char*>(data), n);
  }
  written_ += n;
}

void BufferedWriter::write_at(uint64_t offset, const void* data, std::size_t n) {
  flush();
  const ssize_t got = ::pwrite(fd_, data, n, static_cast<off_t>(offset));
  if (got != static_cast<ssize_t>(n)) fail_errno(path_, "cannot write", got < 0 ? errno : EIO);
}

void BufferedWriter::finish() {
  flush();
  if (::fsync(fd_) != 0) fail_errno(path_, "cannot sync");
  Fd file{fd_};
  fd_ = -1;
  file.close_checked(path_);
}

void BufferedWriter::flush() {
  write_all(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void BufferedWriter::write_all(const char* p, std::size_t n) {
  fs::write_all(fd_, path_, p, n);
}

// ---------------------------------------------------------------------------- MappedFile

MappedFile::MappedFile(const std::string& path) {
  Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) fail_errno(path, "cannot open");
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail_errno(path, "cannot stat");
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {  // mmap of 0 bytes is invalid
    void* map = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, file.fd, 0);
    if (map == MAP_FAILED) fail_errno(path, "cannot map");
    data_ = map;
  }
  // The mapping stays valid once the descriptor is closed.
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

ExclusiveLock::ExclusiveLock(const std::string& path, const std::string& what) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_errno(path, "cannot open the lock file");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    char buffer[32] = {};
    if (::pread(fd_, buffer, sizeof buffer - 1, 0) > 0) holder = buffer;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      fail(what, " is in use by ", holder.empty() ? std::string("another process") : "process " + holder, " (", path,
           "): wait for it to end, or stop it");
    fail_errno(path, "cannot lock", err);
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
}

ExclusiveLock::~ExclusiveLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

ExclusiveLock::ExclusiveLock(ExclusiveLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

ExclusiveLock& ExclusiveLock::operator=(ExclusiveLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

}  // namespace mds::fs
