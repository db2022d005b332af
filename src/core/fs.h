// File-system helpers on plain POSIX calls; the project's only file-system layer.
//
// Why not C++17 <filesystem> (tests/fs_test.cpp forbids it): the pip LibTorch's libtorch.so
// exports its own copies of those symbols, which interpose libstdc++'s; calls crash (jump to 0).
//
// Paths are std::string. Errors throw mds::Error naming the path and strerror(errno).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mds::fs {

// Queries follow symlinks; a path that cannot be stat'ed (missing, no permission) gives false.
bool exists(const std::string& path);
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);
uint64_t file_size(const std::string& path);  // a regular file's size

void create_directories(const std::string& path);  // mkdir -p
// rm -rf: symlinks are removed, never followed; a missing path is fine.
void remove_all(const std::string& path);
// remove_all for destructors and cleanup: never throws; false when something was left.
bool remove_all_noexcept(const std::string& path) noexcept;
void remove_file(const std::string& path);  // unlink one file (or symlink)
void rename(const std::string& from, const std::string& to);
// The entries' names, sorted, without "." and "..".
std::vector<std::string> list_directory(const std::string& path);

// Lexical path operations (no file-system access). join("a", "/b") is "/b", as in a shell.
// strip_trailing_slashes("a/b//") == "a/b"; "/" stays "/".
std::string strip_trailing_slashes(std::string path);
std::string join(const std::string& a, const std::string& b);
// Trailing slashes are ignored: parent_path("a/b/") == "a", filename("a/b/") == "b";
// parent_path("b") == "" and parent_path("/b") == "/".
std::string parent_path(const std::string& path);
std::string filename(const std::string& path);
// `path` made absolute against the working directory (not normalized, symlinks kept).
std::string absolute(const std::string& path);
// The absolute path with symlinks, "." and ".." resolved (realpath); the path must exist.
std::string canonical(const std::string& path);

std::string temp_directory();  // $TMPDIR, else /tmp
// A new, empty directory temp_directory()/PREFIXxxxxxx, private to the user (mkdtemp).
std::string make_temp_directory(const std::string& prefix);

// fsync a file or a directory (after a rename, so that the new entry survives a crash).
void fsync_path(const std::string& path);
// Writes PATH.tmp-<pid>, fsyncs it, renames it to PATH and fsyncs the directory: readers see the
// old file or the whole new one, never half of it. Only a regular file (or a new path) is replaced
// so: a symlink's target is written in its place (the link stays), and anything else that exists
// (a device such as /dev/null, a FIFO, a process substitution) is written to, never replaced.
void write_file_atomic(const std::string& path, const std::string& bytes);
// The whole file's bytes; errors name the path.
std::string read_file(const std::string& path);

// Swaps the complete directory `staged` in as `dir` (an existing `dir` is replaced) and fsyncs the
// parent. POSIX cannot swap two directories in one rename, so a replacement takes two:
//   dir -> dir.old-<pid>, then staged -> dir, then dir.old-<pid> is removed.
// At every moment a complete copy exists under dir or, between the two renames only, under
// dir.old-<pid> (readers that care look there: checkpoint.cpp). If the second rename fails the
// previous dir is put back and the error is thrown; `staged` is left for the caller to remove.
// Returns false when only the removal of the old copy failed (the new dir is in place).
bool replace_directory(const std::string& staged, const std::string& dir);

// A buffered writer on a POSIX descriptor: finish() flushes, fsyncs and closes, reporting every
// error with the path (a destructor without finish() just closes: the file is incomplete).
class BufferedWriter {
 public:
  explicit BufferedWriter(std::string path);
  ~BufferedWriter();
  BufferedWriter(const BufferedWriter&) = delete;
  BufferedWriter& operator=(const BufferedWriter&) = delete;

  void write(const void* data, std::size_t n);
  void write(const std::string& bytes) { write(bytes.data(), bytes.size()); }
  // Overwrites bytes already written (a header's count patched at the end).
  void write_at(uint64_t offset, const void* data, std::size_t n);
  void finish();
  uint64_t written() const { return written_; }
  const std::string& path() const { return path_; }

 private:
  void flush();
  void write_all(const char* p, std::size_t n);

  std::string path_;
  int fd_ = -1;
  std::string buffer_;
  uint64_t written_ = 0;
};

// A whole file mapped read-only (MAP_SHARED). An empty file maps to data() == nullptr.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const void* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// An exclusive advisory lock (flock) on PATH, created if missing, held until destruction; the
// kernel drops it when the process ends, even by SIGKILL, so a stale lock never blocks. The file
// holds the holder's pid, for the error of the next one who tries.
class ExclusiveLock {
 public:
  ExclusiveLock() = default;
  // Throws when another process holds it: "`what` is in use by process PID (PATH)".
  ExclusiveLock(const std::string& path, const std::string& what);
  ~ExclusiveLock();
  ExclusiveLock(ExclusiveLock&& other) noexcept;
  ExclusiveLock& operator=(ExclusiveLock&& other) noexcept;
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace mds::fs
