// File-system helpers on plain POSIX calls; the project's only file-system layer.
//
// Why not C++17 <filesystem> (tests/fs_test.cpp forbids it): the pip LibTorch's libtorch.so
// exports its own copies of those symbols, which interpose libstdc++'s; calls crash (jump to 0).
//
// Paths are std::string. Errors throw mds::Error naming the path and strerror(errno).
#pragma once

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
// old file or the whole new one, never half of it.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace mds::fs
